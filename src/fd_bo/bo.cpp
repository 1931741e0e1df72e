#include "fd_bo/bo.h"

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "fd_bo/device.h"
#include "fd_bo/pipe.h"
#include "virtio_proto/ccmd_encoder.h"

namespace fdnc {

void Bo::unref() {
    if (refcnt_.fetch_sub(1, std::memory_order_acq_rel) == 1) dev_->bo_destroy(this);
}

void Bo::add_fence(FencePoint f) {
    // Caller holds Device::fence_lock(). One entry per pipe slot, newest seqno wins.
    for (FencePoint& e : fences_) {
        if (e.ring == f.ring) {
            if (seqno_reached(f.seqno, e.seqno)) e.seqno = f.seqno;
            return;
        }
    }
    fences_.push_back(f);
}

std::vector<FencePoint> Bo::fences_snapshot() {
    std::lock_guard<std::mutex> g(dev_->fence_lock());
    return fences_;
}

void* Bo::map(int* err) {
    int dummy;
    if (!err) err = &dummy;
    *err = 0;
    if (flags_ & kBoNoMap) {
        *err = -EINVAL;
        return nullptr;
    }
    Bo* b = backing();
    if (b != this) {
        void* base = b->map(err);
        return base ? static_cast<uint8_t*>(base) + block_offset_ : nullptr;
    }
    // C1: a host-side write (GEM_UPLOAD) still in flight must land before the CPU looks.
    if (upload_pending_.load(std::memory_order_acquire)) {
        const uint32_t seqno = upload_seqno_.load(std::memory_order_acquire);
        if (!seqno_reached(dev_->requests().host_seqno(), seqno)) {
            dev_->host_waits().count(HostWait::MapSync);
            int ret = dev_->requests().wait_seqno(seqno, dev_->options().sync_timeout_ns);
            if (ret < 0) {
                *err = ret;
                return nullptr;
            }
        }
        upload_pending_.store(false, std::memory_order_release);
    }
    if (void* m = map_.load(std::memory_order_acquire)) return m;
    void* m = nullptr;
    const uint64_t blocks = host_blocks_on_this_thread();
    int ret = dev_->transport().map_blob(handle_, alloc_size_, &m);
    if (host_blocks_on_this_thread() != blocks) dev_->host_waits().count(HostWait::Map);
    if (ret < 0) {
        *err = ret;
        return nullptr;
    }
    void* expected = nullptr;
    if (!map_.compare_exchange_strong(expected, m)) {
        dev_->transport().unmap_blob(handle_, m, alloc_size_); // another thread won the race
        return expected;
    }
    return m;
}

int Bo::upload(const void* src, uint64_t off, uint64_t len) {
    if (off > size_ || len > size_ - off) return -EINVAL;
    if (len == 0) return 0;
    Bo* b = backing();
    uint32_t res_id = 0;
    int ret = dev_->resolve_res_id(b, &res_id);
    if (ret < 0) return ret;
    const uint8_t* p = static_cast<const uint8_t*>(src);
    uint64_t host_off = backing_offset() + off;
    // C3: chunks of at most 4 KiB, buffered, never waited for.
    constexpr uint64_t kChunk = 0x1000;
    uint32_t seqno = 0;
    for (uint64_t done = 0; done < len; done += kChunk) {
        const uint64_t n = std::min(kChunk, len - done);
        auto req = ccmd::gem_upload(res_id, static_cast<uint32_t>(host_off + done),
                                    std::span<const uint8_t>(p + done, n));
        seqno = dev_->requests().enqueue(req.span(), 0, &ret);
        if (seqno == 0) return ret ? ret : -EIO;
    }
    b->upload_seqno_.store(seqno, std::memory_order_release);
    b->upload_pending_.store(true, std::memory_order_release);
    return 0;
}

int Bo::cpu_prep(Pipe* pipe, uint32_t op, int64_t timeout_ns) {
    if (op & ~(wire::MSM_PREP_READ | wire::MSM_PREP_WRITE | wire::MSM_PREP_NOSYNC)) return -EINVAL;
    Bo* b = backing();
    // 1) the GPU work of this process that uses the bo (its submits, by pipe).
    std::vector<FencePoint> fences = fences_snapshot();
    (void)pipe; // every pipe that used the bo counts, not only the caller's
    for (const FencePoint& f : fences) {
        FenceTimeline* tl = dev_->timeline(f.ring);
        if (!tl || tl->is_retired(f.seqno)) continue;
        if (op & wire::MSM_PREP_NOSYNC) {
            tl->poll(dev_->transport());
            if (!tl->is_retired(f.seqno)) return -EBUSY;
            continue;
        }
        bool blocked = false;
        int ret = tl->wait(dev_->transport(), f.seqno, timeout_ns, &blocked);
        if (blocked) dev_->host_waits().count(HostWait::CpuPrep);
        if (ret < 0) return ret;
    }
    // 2) the host-side prep (other users of a shared buffer); the host never blocks (§12.1), so
    // poll until it stops saying -EBUSY. Private bos have no other users: skip the round trip.
    if (!(b->flags_ & kBoShared) && !b->imported_ && !b->exported_) return 0;
    uint32_t res_id = 0;
    int ret = dev_->resolve_res_id(b, &res_id);
    if (ret < 0) return ret;
    for (int tries = 0; tries < 1000; tries++) {
        auto req = ccmd::gem_cpu_prep(res_id, op & (wire::MSM_PREP_READ | wire::MSM_PREP_WRITE));
        uint8_t rsp[sizeof(wire::msm_ccmd_gem_cpu_prep_rsp)] = {};
        dev_->host_waits().count(HostWait::CpuPrep);
        ret = dev_->requests().send_sync(req.span(), rsp, dev_->options().sync_timeout_ns);
        if (ret < 0) return ret;
        int32_t host_ret = 0;
        if (!ccmd::parse_ret(rsp, &host_ret)) return -EPROTO;
        if (host_ret != -EBUSY || (op & wire::MSM_PREP_NOSYNC)) return host_ret;
    }
    return -ETIMEDOUT;
}

int Bo::set_name(const char* name) {
    if (!name) return -EINVAL;
    name_ = name;
    if (block_bo_) return 0; // sub-bos do not exist on the host (D6-like: nothing to name)
    if (res_id_ == 0) return 0; // sent once the resource id is known (resolve_res_id)
    // C5: at most 32 bytes, buffered.
    std::string_view n(name);
    if (n.size() > wire::kMsmBoNameMax - 1) n = n.substr(0, wire::kMsmBoNameMax - 1);
    auto req = ccmd::gem_set_name(res_id_, n);
    int ret = 0;
    if (!dev_->requests().enqueue(req.span(), 0, &ret)) return ret ? ret : -EIO;
    return 0;
}

int Bo::export_dmabuf() {
    Bo* b = backing();
    if (b != this) return -EINVAL; // a sub-bo shares its block: not exportable on its own
    int fd = -1;
    const uint64_t blocks = host_blocks_on_this_thread();
    int ret = dev_->transport().export_blob_fd(handle_, &fd);
    if (host_blocks_on_this_thread() != blocks) dev_->host_waits().count(HostWait::Share);
    if (ret < 0) return ret;
    exported_ = true; // never recycled through the cache from now on
    return fd;
}

} // namespace fdnc
