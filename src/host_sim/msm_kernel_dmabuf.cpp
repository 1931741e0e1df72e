#include "host_sim/msm_kernel.h"

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <dirent.h>
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "host_sim/msm_kernel_internal.h"

namespace fdnc::host {

using namespace fdnc::wire;
using namespace kernel_detail;

// ---------------------------------------------------------------------------------------------
// dma-buf model and CPU mappings

int MsmKernel::ensure_backing_locked(Object& obj) {
    if (obj.map)
        return 0;
    if (cfg_.recycle_backings) {
        if (const auto spare = spare_backings_.take(obj.size)) {
            obj.memfd = spare->memfd;
            obj.map = spare->map;
            obj.dev = spare->dev;
            obj.ino = spare->ino;
            return 0;
        }
    }
    int fd = memfd_create("fdnc-gem", MFD_CLOEXEC);
    if (fd < 0)
        return -errno;
    if (ftruncate(fd, static_cast<off_t>(obj.size)) != 0) { // sparse: no RAM until touched
        int e = -errno;
        close(fd);
        return e;
    }
    void* p = mmap(nullptr, obj.size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (p == MAP_FAILED) {
        int e = -errno;
        close(fd);
        return e;
    }
    struct stat st {};
    fstat(fd, &st);
    obj.memfd = fd;
    obj.map = p;
    obj.dev = st.st_dev;
    obj.ino = st.st_ino;
    return 0;
}

int MsmKernel::prime_handle_to_fd_call(FileId f, uint32_t handle, int* fd) {
    std::lock_guard lk(mu_);
    Object* obj = nullptr;
    if (int e = object_locked(f, handle, &obj))
        return e;
    if (int e = ensure_backing_locked(*obj))
        return e;
    int nfd = fcntl(obj->memfd, F_DUPFD_CLOEXEC, 0);
    if (nfd < 0)
        return -errno;
    obj->shared = true;
    if (!obj->exported) {
        obj->exported = true;
        exported_.insert(obj->id);
        obj->refs++; // the dma-buf holds the object (§1.4: its ranges stay reserved)
    }
    *fd = nfd;
    return 0;
}

int MsmKernel::prime_fd_to_handle_call(FileId f, int fd, uint32_t* handle) {
    std::lock_guard lk(mu_);
    File* file = file_locked(f);
    if (!file)
        return -EBADF;
    struct stat st {};
    if (fd < 0 || fstat(fd, &st) != 0)
        return -EBADF;
    for (uint64_t oid : exported_) {
        auto oit = objects_.find(oid);
        if (oit == objects_.end())
            continue;
        Object* obj = oit->second.get();
        if (obj->dev != st.st_dev || obj->ino != st.st_ino)
            continue;
        for (auto& [h, id] : file->handles) {
            if (id == oid) { // drm_prime: one handle per object per file
                *handle = h;
                return 0;
            }
        }
        *handle = add_handle_locked(*file, *obj);
        return 0;
    }
    return -EINVAL; // not a dma-buf of this device
}

// An exported object whose only reference is the dma-buf dies when no fd of it is open anymore.
// The model cannot hook close(), so it looks for such fds in /proc/self/fd when it matters
// (before allocating memory or iova space).
void MsmKernel::reap_orphan_exports_locked() {
    std::vector<Object*> orphans;
    for (uint64_t oid : exported_) {
        auto it = objects_.find(oid);
        if (it != objects_.end() && it->second->refs == 1)
            orphans.push_back(it->second.get());
    }
    if (orphans.empty())
        return;
    std::set<std::pair<dev_t, ino_t>> open;
    std::set<int> own;
    for (auto* o : orphans)
        own.insert(o->memfd);
    if (DIR* d = opendir("/proc/self/fd")) {
        int dfd = dirfd(d);
        while (dirent* e = readdir(d)) {
            int fd = atoi(e->d_name);
            if (e->d_name[0] == '.' || fd == dfd || own.count(fd))
                continue;
            // stat() through the /proc link, not fstat(fd): the fd belongs to whichever thread
            // opened it and may be closed or reused meanwhile; the path lookup only reads
            // what the link points at (and TSan rightly flagged fstat on other threads' fds).
            char path[64];
            std::snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
            struct stat st {};
            if (stat(path, &st) == 0)
                open.insert({st.st_dev, st.st_ino});
        }
        closedir(d);
    } else {
        return; // cannot tell: keep them alive
    }
    for (auto* o : orphans) {
        if (!open.count({o->dev, o->ino})) {
            o->exported = false;
            exported_.erase(o->id);
            unref_locked(*o);
        }
    }
}

int MsmKernel::map_object_call(FileId f, uint32_t handle, void** ptr, uint64_t* size) {
    std::lock_guard lk(mu_);
    Object* obj = nullptr;
    if (int e = object_locked(f, handle, &obj))
        return e;
    if (int e = ensure_backing_locked(*obj))
        return e;
    *ptr = obj->map;
    *size = obj->size;
    return 0;
}

int MsmKernel::cpu_map(FileId f, uint64_t offset, uint64_t len, int* fd, uint64_t* object_id) {
    std::lock_guard lk(mu_);
    File* file = file_locked(f);
    if (!file)
        return -EBADF;
    // GET_OFFSET hands out object id << 20 (the fake mmap offset space).
    auto it = objects_.find(offset >> 20);
    if ((offset & ((1ull << 20) - 1)) || it == objects_.end())
        return -EINVAL;
    Object& obj = *it->second;
    if (len == 0 || len > obj.size)
        return -EINVAL;
    bool allowed = false;
    for (auto& [h, oid] : file->handles)
        allowed |= oid == obj.id;
    if (!allowed)
        return -EACCES; // drm_vma_node_is_allowed()
    if (int e = ensure_backing_locked(obj))
        return e;
    int nfd = fcntl(obj.memfd, F_DUPFD_CLOEXEC, 0);
    if (nfd < 0)
        return -errno;
    obj.refs++; // the mapping holds the object (and, before VM_BIND, its ranges: §12.3)
    obj.shared = true; // a mapping of another process's: never reuse this memory
    *fd = nfd;
    *object_id = obj.id;
    return 0;
}

void MsmKernel::cpu_unmap(uint64_t object_id) {
    std::lock_guard lk(mu_);
    auto it = objects_.find(object_id);
    if (it != objects_.end())
        unref_locked(*it->second);
}

int MsmKernel::object_size(FileId f, uint32_t handle, uint64_t* size) {
    std::lock_guard lk(mu_);
    Object* obj = nullptr;
    if (int e = object_locked(f, handle, &obj))
        return e;
    *size = obj->size;
    return 0;
}

} // namespace fdnc::host
