// Backend: what serves the fake render node's driver uAPI. The interception layer (interpose.cpp,
// render_node.cpp) owns fds, the node's identity and the generic ioctls every DRM node answers the
// same way (VERSION, GET_CAP, GET_UNIQUE, SET_CLIENT_NAME); a backend serves the rest: GEM, PRIME
// and the driver ioctls (DRM_IOCTL_MSM_*), and mmap of the node at a GEM_INFO GET_OFFSET offset.
//
// Backends: host (host_backend.h: host_sim's MsmKernel, for the real virglrenderer) and guest
// (guest_backend.h: fd_bo over a transport, under an unmodified Mesa).
//
// Every call returns 0 or -errno, as the kernel would; the interception layer turns that into
// -1 + errno. A backend is shared by every thread and every open file of the node: it locks itself.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <sys/types.h>

namespace fdnc::shim {

// One open of the node (a drm_file): dup'd fds share it.
using BackendFile = uint64_t;

// What DRM_IOCTL_VERSION reports.
struct NodeIdentity {
    std::string name; // driver name, e.g. "msm"
    std::string date;
    std::string desc;
    int major = 0, minor = 0, patchlevel = 0;
};

class Backend {
public:
    virtual ~Backend() = default;

    virtual NodeIdentity identity() const = 0;

    virtual int open_file(BackendFile* file) = 0;
    virtual void close_file(BackendFile file) = 0;

    // A driver or GEM/PRIME ioctl on an open file. `arg` is the caller's argument (the kernel's
    // copy_from_user/copy_to_user are plain memory accesses here).
    virtual int ioctl(BackendFile file, unsigned long request, void* arg) = 0;

    // mmap(addr, len, prot, flags, node fd, offset): on success *out is the mapping and *token names
    // it for unmap().
    virtual int mmap(BackendFile file, void* addr, size_t len, int prot, int flags, off_t offset,
                     void** out, uint64_t* token) = 0;
    // munmap of the whole mapping `token` at addr: the backend unmaps the memory (a backend may
    // have lent memory it keeps mapped) and drops what the mapping held. 0 or -errno.
    virtual int unmap(uint64_t token, void* addr, size_t len) = 0;
};

} // namespace fdnc::shim
