#include "inproc_link.h"

#include <mutex>

namespace fdnc {

namespace {

std::mutex& registry_mu() {
    static std::mutex mu;
    return mu;
}

InprocHostFactory& registry() {
    static InprocHostFactory factory;
    return factory;
}

} // namespace

void register_inproc_host(InprocHostFactory factory) {
    std::lock_guard g(registry_mu());
    registry() = std::move(factory);
}

InprocHostFactory registered_inproc_host() {
    std::lock_guard g(registry_mu());
    return registry();
}

} // namespace fdnc
