// Packing decision: records stay back to back at their own hdr.len (a multiple of 4, H2) inside
// an 8-byte aligned 16 KiB buffer. Padding records to 8 is not possible in general: IOCTL_SIMPLE
// must have hdr.len == 20 + ioctl size exactly (§5.5), e.g. 44 for GET_PARAM.
#include "request_buffer.h"

#include <sched.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstring>

#include "ccmd_decoder.h"

namespace fdnc {

namespace {

using namespace wire;
using Clock = std::chrono::steady_clock;

constexpr uint32_t align8(uint32_t n) { return (n + 7u) & ~7u; }

uint32_t load_hdr(std::span<const uint8_t> req, size_t off) {
    uint32_t v;
    std::memcpy(&v, req.data() + off, sizeof v);
    return v;
}

void store_hdr(std::span<uint8_t> req, size_t off, uint32_t v) { std::memcpy(req.data() + off, &v, sizeof v); }

// Bytes the host will write for this request (R2 checks rsp_off + this against the area).
uint32_t host_response_size(std::span<const uint8_t> req) {
    Ccmd c;
    c.cmd = load_hdr(req, offsetof(vdrm_ccmd_req, cmd));
    c.bytes = req;
    return ccmd_response_size(c);
}

thread_local RequestThreadCounters t_counters;

uint64_t mono_ns() {
    return static_cast<uint64_t>(
        std::chrono::duration_cast<std::chrono::nanoseconds>(Clock::now().time_since_epoch()).count());
}

} // namespace

const RequestThreadCounters& RequestBuffer::thread_counters() { return t_counters; }

RequestBuffer::RequestBuffer(Transport& transport, void* shmem, uint32_t shmem_size)
    : transport_(transport), shmem_(static_cast<uint8_t*>(shmem)), shmem_size_(shmem ? shmem_size : 0),
      rsp_mem_offset_(0), ring0_fences_(transport.info().ring0_fences) {
    if (shmem_ && shmem_size_ >= sizeof(vdrm_shmem)) {
        rsp_mem_offset_ = shmem_u32(offsetof(vdrm_shmem, rsp_mem_offset));
        // R1; a host offset past the page leaves no area: every response request gets -ENOMEM.
        if (rsp_mem_offset_ >= sizeof(vdrm_shmem) && rsp_mem_offset_ < shmem_size_)
            rsp_area_size_ = shmem_size_ - rsp_mem_offset_;
    }
    buf_.reserve(kRequestBufferSize);
}

uint32_t RequestBuffer::shmem_u32(size_t off) const {
    // Acquire: a seqno read must make the host's earlier response bytes visible (H7, R4).
    return __atomic_load_n(reinterpret_cast<const uint32_t*>(shmem_ + off), __ATOMIC_ACQUIRE);
}

uint32_t RequestBuffer::host_seqno() const {
    return shmem_ && shmem_size_ >= sizeof(vdrm_shmem) ? shmem_u32(offsetof(vdrm_shmem, seqno)) : 0;
}

uint32_t RequestBuffer::async_error() const {
    if (!shmem_has_field(rsp_mem_offset_, offsetof(msm_shmem, async_error))) return 0;
    return shmem_u32(offsetof(msm_shmem, async_error));
}

uint32_t RequestBuffer::global_faults() const {
    if (!shmem_has_field(rsp_mem_offset_, offsetof(msm_shmem, global_faults))) return 0;
    return shmem_u32(offsetof(msm_shmem, global_faults));
}

size_t RequestBuffer::buffered_bytes() const {
    std::lock_guard g(lock_);
    return buf_.size();
}

int RequestBuffer::broken() const {
    std::lock_guard g(lock_);
    return broken_;
}

RequestStats RequestBuffer::stats() const {
    std::lock_guard g(lock_);
    return stats_;
}

uint32_t RequestBuffer::next_seqno_locked() {
    // Q1: pre-increment; 0 is skipped on wrap so it can mean "failed" to callers.
    if (++next_seqno_ == 0) ++next_seqno_;
    return next_seqno_;
}

// Q7: slots rounded to 8, wrap to 0 when the next one would reach the area end; the guest
// pre-writes rsp.len (R3). Unlike Mesa, slots still being read by send_sync are skipped.
uint32_t RequestBuffer::alloc_rsp_locked(uint32_t size) {
    const uint32_t sz = align8(size);
    if (sz == 0 || sz > rsp_area_size_) return UINT32_MAX;
    uint32_t off = next_rsp_off_;
    for (size_t tries = 0; tries <= reading_.size() + 1; ++tries) {
        if (uint64_t{off} + sz >= rsp_area_size_) off = 0;
        const Slot* hit = nullptr;
        for (const Slot& s : reading_)
            if (off < s.off + s.size && s.off < off + sz) hit = &s;
        if (!hit) {
            next_rsp_off_ = off + sz;
            __atomic_store_n(reinterpret_cast<uint32_t*>(shmem_ + rsp_mem_offset_ + off), sz, __ATOMIC_RELAXED);
            return off;
        }
        off = align8(hit->off + hit->size);
    }
    return UINT32_MAX;
}

uint32_t RequestBuffer::enqueue_locked(std::span<uint8_t> req, uint32_t rsp_size, uint32_t* rsp_off, int* err) {
    auto fail = [&](int e) {
        if (err) *err = e;
        return 0u;
    };
    if (broken_) return fail(broken_);
    if (req.size() < sizeof(vdrm_ccmd_req) || req.size() % 4 != 0 ||
        load_hdr(req, offsetof(vdrm_ccmd_req, len)) != req.size())
        return fail(-EINVAL);
    if (req.size() > kRequestBufferSize) return fail(-E2BIG); // Q2
    if (buf_.size() + req.size() > kRequestBufferSize) {
        if (int r = flush_locked(); r < 0) return fail(r);
    }
    // Every request with a response gets a full-size slot, even if the caller ignores it:
    // otherwise the host would write at rsp_off 0, over someone else's slot.
    const uint32_t need = std::max(rsp_size, host_response_size(req));
    uint32_t off = 0;
    if (need > 0) {
        off = alloc_rsp_locked(need);
        if (off == UINT32_MAX) return fail(-ENOMEM); // no shared page yet, or slot larger than the area
    }
    const uint32_t seqno = next_seqno_locked();
    store_hdr(req, offsetof(vdrm_ccmd_req, seqno), seqno);
    store_hdr(req, offsetof(vdrm_ccmd_req, rsp_off), off);
    buf_.insert(buf_.end(), req.begin(), req.end());
    ++buffered_ccmds_;
    if (rsp_off) *rsp_off = off;
    return seqno;
}

uint32_t RequestBuffer::enqueue(std::span<uint8_t> req, uint32_t rsp_size, int* err) {
    std::lock_guard g(lock_);
    return enqueue_locked(req, rsp_size, nullptr, err);
}

int RequestBuffer::flush_locked(TransportFence* fence) {
    if (broken_) return broken_;
    if (buf_.empty() && !fence) return 0;
    ExecbufArgs args;
    args.cmd = buf_;
    args.ring_idx = 0; // Q3: the host CPU timeline
    args.fence_out = fence != nullptr;
    const uint64_t t0 = mono_ns();
    const int r = transport_.execbuf(args, fence);
    const uint64_t dt = mono_ns() - t0;
    ++t_counters.transport_calls;
    t_counters.transport_ns += dt;
    if (!buf_.empty()) {
        ++t_counters.flushes;
        t_counters.flushed_bytes += buf_.size();
        t_counters.flush_ns += dt;
    }
    if (!buf_.empty() && r == 0) {
        stats_.ccmds += buffered_ccmds_;
        stats_.batches += 1;
        stats_.bytes += buf_.size();
    }
    // On failure the requests are dropped and the stream is broken for good (broken()).
    if (r < 0 && !buf_.empty()) broken_ = r;
    buf_.clear();
    buffered_ccmds_ = 0;
    return r;
}

int RequestBuffer::flush() {
    std::lock_guard g(lock_);
    return flush_locked();
}

int RequestBuffer::create_blob(BlobCreateArgs args, std::span<uint8_t> req, uint32_t* handle) {
    std::lock_guard g(lock_);
    // Q4: earlier requests reach the host before the tunnelled one (D4 relies on this order).
    if (int r = flush_locked(); r < 0) return r;
    if (!req.empty()) {
        if (req.size() < sizeof(vdrm_ccmd_req) || req.size() % 4 != 0 ||
            load_hdr(req, offsetof(vdrm_ccmd_req, len)) != req.size())
            return -EINVAL;
        if (host_response_size(req) != 0) return -EINVAL; // no slot for a tunnelled response
        store_hdr(req, offsetof(vdrm_ccmd_req, seqno), next_seqno_locked());
        store_hdr(req, offsetof(vdrm_ccmd_req, rsp_off), 0);
    }
    args.cmd = req;
    const uint64_t t0 = mono_ns();
    const int r = transport_.create_blob(args, handle);
    ++t_counters.transport_calls;
    t_counters.transport_ns += mono_ns() - t0;
    if (r == 0 && !req.empty()) {
        stats_.ccmds += 1;
        stats_.batches += 1;
        stats_.bytes += req.size();
    }
    return r;
}

int RequestBuffer::submit(std::span<uint8_t> req, uint32_t ring_idx, TransportFence* fence, int in_fence_fd) {
    if (req.size() < sizeof(vdrm_ccmd_req) || req.size() % 4 != 0 ||
        load_hdr(req, offsetof(vdrm_ccmd_req, len)) != req.size())
        return -EINVAL;
    std::lock_guard g(lock_);
    // Q5: seqno first, then the buffered requests, then the submit alone on its ring.
    store_hdr(req, offsetof(vdrm_ccmd_req, seqno), next_seqno_locked());
    store_hdr(req, offsetof(vdrm_ccmd_req, rsp_off), 0);
    if (int r = flush_locked(); r < 0) return r;
    ExecbufArgs args;
    args.cmd = req;
    args.ring_idx = ring_idx;
    args.fence_out = fence != nullptr;
    args.in_fence_fd = in_fence_fd;
    const uint64_t t0 = mono_ns();
    const int r = transport_.execbuf(args, fence);
    ++t_counters.transport_calls;
    t_counters.transport_ns += mono_ns() - t0;
    if (r == 0) {
        stats_.ccmds += 1;
        stats_.batches += 1;
        stats_.bytes += req.size();
    }
    return r;
}

// Q6: the ring-0 fence (where the transport has one) says the batch ran; the seqno says this
// request finished (R4). Without a fence (vtest, §12.3) the seqno is all there is: spin briefly,
// since a host on another core answers within microseconds, then sleep in the transport with a
// growing slice so a dead host ends the wait at once instead of at the timeout.
int RequestBuffer::wait_host(TransportFence fence, uint32_t seqno, int64_t timeout_ns) {
    constexpr auto kSpin = std::chrono::microseconds(50);
    constexpr int64_t kMinSliceNs = 20'000, kMaxSliceNs = 200'000;
    const auto start = Clock::now();
    if (fence)
        if (int r = transport_.wait_fence(fence, timeout_ns); r < 0) return r;
    int64_t slice_ns = 0;
    for (bool blocked = false;; blocked = true) {
        if (seqno_reached(host_seqno(), seqno)) {
            if (blocked) note_host_block("shared page seqno");
            return 0;
        }
        const auto waited = Clock::now() - start;
        if (timeout_ns >= 0 && waited >= std::chrono::nanoseconds(timeout_ns)) return -ETIMEDOUT;
        if (waited < kSpin) {
            sched_yield();
            continue;
        }
        slice_ns = std::clamp(slice_ns * 2, kMinSliceNs, kMaxSliceNs);
        if (timeout_ns >= 0)
            slice_ns = std::min<int64_t>(slice_ns, timeout_ns - std::chrono::duration_cast<std::chrono::nanoseconds>(waited).count());
        if (int r = transport_.wait_host_io(slice_ns); r < 0) return r;
    }
}

int RequestBuffer::send_sync(std::span<uint8_t> req, std::span<uint8_t> rsp, int64_t timeout_ns) {
    uint32_t seqno = 0, off = 0, slot = 0;
    TransportFence fence;
    {
        std::lock_guard g(lock_);
        int err = 0;
        seqno = enqueue_locked(req, static_cast<uint32_t>(std::min<size_t>(rsp.size(), UINT32_MAX)), &off, &err);
        if (seqno == 0) return err;
        slot = align8(std::max<uint32_t>(static_cast<uint32_t>(rsp.size()), host_response_size(req)));
        if (slot) reading_.push_back({off, slot});
        if (int r = flush_locked(ring0_fences_ ? &fence : nullptr); r < 0) {
            if (slot) std::erase_if(reading_, [&](const Slot& s) { return s.off == off; });
            return r;
        }
    }
    int r = wait_host(fence, seqno, timeout_ns);
    if (r == 0 && slot) {
        // R3: the host stored min(our len, its size); anything else means the slot is garbage.
        const uint8_t* p = shmem_ + rsp_mem_offset_ + off;
        const uint32_t len = __atomic_load_n(reinterpret_cast<const uint32_t*>(p), __ATOMIC_RELAXED);
        if (len > slot || len < sizeof(vdrm_ccmd_rsp)) {
            r = -EPROTO;
        } else {
            // An empty rsp has a null data(): memcpy/memset must not see it (UB even for 0 bytes).
            const size_t n = std::min<size_t>(len, rsp.size());
            if (n) std::memcpy(rsp.data(), p, n);
            if (rsp.size() > n) std::memset(rsp.data() + n, 0, rsp.size() - n);
        }
    }
    if (slot) {
        std::lock_guard g(lock_);
        std::erase_if(reading_, [&](const Slot& s) { return s.off == off; });
    }
    return r;
}

int RequestBuffer::wait_seqno(uint32_t seqno, int64_t timeout_ns) {
    if (seqno_reached(host_seqno(), seqno)) return 0;
    TransportFence fence;
    {
        std::lock_guard g(lock_);
        if (int r = flush_locked(ring0_fences_ ? &fence : nullptr); r < 0) return r;
    }
    return wait_host(fence, seqno, timeout_ns);
}

} // namespace fdnc
