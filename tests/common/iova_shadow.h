// IovaShadow: the guest-side oracle of the iova-safety stress, independent of the host model
// (whose own insert already refuses overlapping mappings, so checking it can only find model
// bugs). It records every range the device hands out, the submits (pipe, fence) that used it and
// when it was freed. A new handout overlapping a freed one whose submits have not all retired is a
// violation: the GPU may still be using that range for the old owner. The bo cache and the
// suballocation heap count as handouts too: they must also wait for the old owner's submits.
// Thread-safe; Pipe::is_retired is (it reads the pipe's atomics).
//
// set_iova_without_clear is the second oracle, on the host's side but not the model's rules: it
// replays the host kernel's call log (HostSimConfig::kernel.call_log) and finds a SET_IOVA onto a
// range another handle still maps, i.e. a reuse the host was not told about (SET_IOVA 0 or
// GEM_CLOSE of the previous owner first), whatever the model answered.
// Shared by the iova stress (reliability) and the retire tests (fd_bo).
#pragma once

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <mutex>
#include <string>
#include <vector>

#include "fd_bo/pipe.h"

namespace fdnc::test {

class IovaShadow {
public:
    uint64_t handed_out(uint64_t iova, uint64_t size) {
        std::lock_guard g(mu_);
        for (auto it = freed_.begin(); it != freed_.end();) {
            if (all_retired(it->second)) {
                it = freed_.erase(it);
                continue;
            }
            const Handout& h = it->second;
            if (iova < h.iova + h.size && h.iova < iova + size && violations_++ == 0)
                first_ = "[" + hex(iova) + ", +" + hex(size) + ") handed out while [" + hex(h.iova) + ", +" +
                         hex(h.size) + ") still had an unretired submit";
            ++it;
        }
        const uint64_t id = next_id_++;
        live_[id] = Handout{iova, size, {}};
        return id;
    }
    void used(uint64_t id, const Pipe* pipe, uint32_t fence) {
        std::lock_guard g(mu_);
        auto it = live_.find(id);
        if (it != live_.end()) it->second.uses.push_back({pipe, fence});
    }
    void freed(uint64_t id) {
        std::lock_guard g(mu_);
        auto it = live_.find(id);
        if (it == live_.end()) return;
        if (!all_retired(it->second)) freed_.emplace(id, std::move(it->second));
        live_.erase(it);
    }
    // Before a pipe is deleted (after its last fence retired): its uses can no longer be asked.
    void forget_pipe(const Pipe* pipe) {
        std::lock_guard g(mu_);
        for (auto* m : {&live_, &freed_})
            for (auto& [id, h] : *m) std::erase_if(h.uses, [&](const Use& u) { return u.pipe == pipe; });
    }
    uint64_t violations() const {
        std::lock_guard g(mu_);
        return violations_;
    }
    std::string first_violation() const {
        std::lock_guard g(mu_);
        return first_;
    }

private:
    struct Use {
        const Pipe* pipe;
        uint32_t fence;
    };
    struct Handout {
        uint64_t iova, size;
        std::vector<Use> uses;
    };
    static bool all_retired(const Handout& h) {
        for (const Use& u : h.uses)
            if (!u.pipe->is_retired(u.fence)) return false;
        return true;
    }
    static std::string hex(uint64_t v) {
        char b[24];
        std::snprintf(b, sizeof b, "0x%llx", static_cast<unsigned long long>(v));
        return b;
    }
    mutable std::mutex mu_;
    std::map<uint64_t, Handout> live_, freed_;
    uint64_t next_id_ = 1;
    uint64_t violations_ = 0;
    std::string first_;
};

// Replays the host's kernel call log: per handle its size and current mapping; a SET_IOVA(v != 0)
// whose range meets another handle's current mapping is a reuse the host was not told about.
// "" when there is none, else the first one.
inline std::string set_iova_without_clear(const std::vector<std::string>& log) {
    struct Obj { uint64_t size = 0, iova = 0; };
    std::map<uint32_t, Obj> objs;
    auto field = [](const std::string& l, const char* key) -> uint64_t {
        const size_t k = l.find(std::string(" ") + key + "=");
        return k == std::string::npos ? 0 : std::strtoull(l.c_str() + k + std::strlen(key) + 2, nullptr, 0);
    };
    for (const std::string& l : log) {
        const bool ok = l.find("\t0\t") != std::string::npos;
        if (l.rfind("MSM_GEM_NEW\t", 0) == 0 && ok) {
            objs[uint32_t(field(l, "handle"))] = Obj{field(l, "size"), 0};
        } else if (l.rfind("GEM_CLOSE\t", 0) == 0 && ok) {
            objs.erase(uint32_t(field(l, "handle")));
        } else if (l.rfind("MSM_GEM_INFO\t", 0) == 0 && l.find("info=SET_IOVA") != std::string::npos) {
            const uint32_t h = uint32_t(field(l, "handle"));
            const uint64_t v = field(l, "value");
            auto it = objs.find(h);
            if (it == objs.end()) continue;
            if (v != 0) {
                for (auto& [g, o] : objs)
                    if (g != h && o.iova && v < o.iova + o.size && o.iova < v + it->second.size)
                        return "SET_IOVA(handle " + std::to_string(h) + ", " + std::to_string(v) +
                               ") while handle " + std::to_string(g) + " still maps " + std::to_string(o.iova);
            }
            if (ok) it->second.iova = v;
        }
    }
    return {};
}

} // namespace fdnc::test
