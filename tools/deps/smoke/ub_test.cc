#include <climits>
#include <cstdio>
int main(int argc, char**) {
  int x = INT_MAX;
  x += argc;  // signed overflow
  std::printf("%d\n", x);
  return 0;
}
