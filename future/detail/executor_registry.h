// Futures know their executor through a weak reference: the state stores a never-reused id, and
// this registry maps live ids to executors. Only executor creation, destruction and
// Future::executor() touch it, so the submit path pays nothing for the feature.
#ifndef BETTERCONCURRENT_FUTURE_DETAIL_EXECUTOR_REGISTRY_H_
#define BETTERCONCURRENT_FUTURE_DETAIL_EXECUTOR_REGISTRY_H_

#include <cstdint>
#include <memory>

namespace betterconcurrent {
class Executor;
namespace detail {

// Registers `executor`; returns its id (never 0, never reused). May throw std::bad_alloc.
std::uint64_t register_executor(std::weak_ptr<Executor> executor);
// Forgets `id`. Nothrow.
void unregister_executor(std::uint64_t id) noexcept;
// The live executor with this id, or null. May throw std::bad_alloc.
std::shared_ptr<Executor> find_executor(std::uint64_t id);

}  // namespace detail
}  // namespace betterconcurrent

#endif  // BETTERCONCURRENT_FUTURE_DETAIL_EXECUTOR_REGISTRY_H_
