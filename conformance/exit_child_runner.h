// Runs conformance/exit_child (a whole program whose exit the test watches) and collects what it
// printed and how it ended. For the tests whose binaries list :exit_child in their data.
#ifndef BETTERCONCURRENT_CONFORMANCE_EXIT_CHILD_RUNNER_H_
#define BETTERCONCURRENT_CONFORMANCE_EXIT_CHILD_RUNNER_H_

#include <optional>
#include <string>

namespace betterconcurrent::replay {

struct ChildOutput {
  int status = 0;  // as waitpid() reports it
  std::string out;
  std::string err;
};

// Runs `exit_child <scenario>` with stdout and stderr in files under TEST_TMPDIR, for up to
// kLongTimeout (then kills it). nullopt, with a test failure, if it could not run or hung.
std::optional<ChildOutput> run_exit_child(const std::string& scenario);

}  // namespace betterconcurrent::replay

#endif  // BETTERCONCURRENT_CONFORMANCE_EXIT_CHILD_RUNNER_H_
