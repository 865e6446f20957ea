#include "conformance/exit_child_runner.h"

#include <fcntl.h>
#include <spawn.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>
#include <fstream>
#include <sstream>

#include "conformance/event.h"
#include "gtest/gtest.h"
#include "testing/fork.h"

extern char** environ;

namespace betterconcurrent::replay {
namespace {

std::string read_file(const std::string& path) {
  std::ifstream in(path);
  std::ostringstream content;
  content << in.rdbuf();
  return content.str();
}

}  // namespace

std::optional<ChildOutput> run_exit_child(const std::string& scenario) {
  const char* tmp = std::getenv("TEST_TMPDIR");
  std::string base = std::string(tmp != nullptr ? tmp : "/tmp") + "/exit_child." + scenario + "." +
                     std::to_string(getpid());
  std::string out_path = base + ".stdout";
  std::string err_path = base + ".stderr";
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_addopen(&actions, STDOUT_FILENO, out_path.c_str(),
                                   O_WRONLY | O_CREAT | O_TRUNC, 0600);
  posix_spawn_file_actions_addopen(&actions, STDERR_FILENO, err_path.c_str(),
                                   O_WRONLY | O_CREAT | O_TRUNC, 0600);
  std::string program = "conformance/exit_child";
  std::string arg = scenario;
  char* argv[] = {program.data(), arg.data(), nullptr};
  pid_t pid = 0;
  int rc = posix_spawn(&pid, program.c_str(), &actions, nullptr, argv, environ);
  posix_spawn_file_actions_destroy(&actions);
  if (rc != 0) {
    ADD_FAILURE() << "cannot run " << program << ": " << std::strerror(rc);
    return std::nullopt;
  }
  std::optional<int> status = test_util::wait_child(pid, kLongTimeout);
  if (!status) {
    ADD_FAILURE() << "exit_child " << scenario << " hung at exit and was killed; stderr:\n"
                  << read_file(err_path);
    return std::nullopt;
  }
  return ChildOutput{*status, read_file(out_path), read_file(err_path)};
}

}  // namespace betterconcurrent::replay
