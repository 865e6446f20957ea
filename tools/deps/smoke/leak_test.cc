#include <cstdio>
int* volatile g_sink;
int main() {
  g_sink = new int[64];
  g_sink = nullptr;  // the only pointer is lost: a definite leak
  std::puts("leaked 256 bytes");
  return 0;
}
