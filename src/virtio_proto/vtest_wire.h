// The vtest socket protocol (virglrenderer >= 1.0) subset a native-context client and fdnc-hostsim
// speak. Numbers from PROTOCOL.md §8 (VR13 vtest_protocol.h). Everything is little-endian u32.
#pragma once

#include <cstdint>
#include <cstddef>
#include <string>
#include <vector>

namespace fdnc::vtest {

// §8.1: [0] = payload length (dwords; BYTES for CREATE_RENDERER), [1] = command id.
inline constexpr uint32_t kHdrSize = 2;
inline constexpr uint32_t kHdrLen = 0;
inline constexpr uint32_t kHdrCmd = 1;

// §8.2 command ids (only the ones fdnc sends or serves are named).
inline constexpr uint32_t VCMD_GET_CAPS = 1;
inline constexpr uint32_t VCMD_RESOURCE_UNREF = 3;
inline constexpr uint32_t VCMD_RESOURCE_BUSY_WAIT = 7;
inline constexpr uint32_t VCMD_CREATE_RENDERER = 8;
inline constexpr uint32_t VCMD_PING_PROTOCOL_VERSION = 10;
inline constexpr uint32_t VCMD_PROTOCOL_VERSION = 11;
inline constexpr uint32_t VCMD_GET_PARAM = 15;
inline constexpr uint32_t VCMD_GET_CAPSET = 16;
inline constexpr uint32_t VCMD_CONTEXT_INIT = 17;
inline constexpr uint32_t VCMD_RESOURCE_CREATE_BLOB = 18;
inline constexpr uint32_t VCMD_SUBMIT_CMD2 = 24;
inline constexpr uint32_t VCMD_RESOURCE_EXPORT_FD = 38;

// §8.1: VR13 servers speak up to 4; native contexts need >= 3 (GET_CAPSET, CONTEXT_INIT, blobs).
inline constexpr uint32_t kProtocolVersion = 4;
inline constexpr uint32_t kMinNativeContextVersion = 3;

// §8.3 fixed payload sizes (dwords).
inline constexpr uint32_t kBusyWaitSize = 2;
inline constexpr uint32_t kBusyWaitFlagWait = 1;
inline constexpr uint32_t kGetParamSize = 1;
inline constexpr uint32_t kGetCapsetSize = 2;
inline constexpr uint32_t kContextInitSize = 1;
inline constexpr uint32_t kBlobCreateSize = 6;
inline constexpr uint32_t kResourceUnrefSize = 1;
inline constexpr uint32_t kExportFdSize = 1;

inline constexpr uint32_t VCMD_PARAM_MAX_TIMELINE_COUNT = 1;
inline constexpr uint32_t VCMD_PARAM_HAS_TIMELINE_SYNCOBJ = 2;

// §8.3: same numbers as virtio-gpu's blob_mem / blob_flags.
inline constexpr uint32_t VCMD_BLOB_TYPE_GUEST = 1;
inline constexpr uint32_t VCMD_BLOB_TYPE_HOST3D = 2;
inline constexpr uint32_t VCMD_BLOB_TYPE_HOST3D_GUEST = 3;
inline constexpr uint32_t VCMD_BLOB_FLAG_MAPPABLE = 0x1;
inline constexpr uint32_t VCMD_BLOB_FLAG_SHAREABLE = 0x2;
inline constexpr uint32_t VCMD_BLOB_FLAG_CROSS_DEVICE = 0x4;

// §8.4 SUBMIT_CMD2: batch_count, then 8-dword batches (the wire stride even where a header
// declares 6 fields), then command words and sync triples.
inline constexpr uint32_t VCMD_SUBMIT_CMD2_FLAG_RING_IDX = 0x1;
inline constexpr uint32_t VCMD_SUBMIT_CMD2_FLAG_IN_FENCE_FD = 0x2;
inline constexpr uint32_t VCMD_SUBMIT_CMD2_FLAG_OUT_FENCE_FD = 0x4;
inline constexpr uint32_t kBatchDwords = 8;
enum BatchField : uint32_t {
    kBatchFlags = 0,
    kBatchCmdOffset = 1,
    kBatchCmdSize = 2,
    kBatchSyncOffset = 3,
    kBatchSyncCount = 4,
    kBatchRingIdx = 5,
    kBatchNumInSyncobj = 6,
    kBatchNumOutSyncobj = 7,
};
inline constexpr uint32_t kMaxRings = 64; // §8.4: ring_idx < 64

// §8.1: the dot-file `.virgl_test` in the system temporary directory; VTEST_SOCKET_NAME (the
// variable virglrenderer's client and server read) overrides it.
inline constexpr const char* kSocketEnv = "VTEST_SOCKET_NAME";
inline constexpr const char* kDefaultSocketName = "/tmp/.virgl_test";

// The path a client connects to when its URI names none: $VTEST_SOCKET_NAME or the default.
std::string default_socket_path();

} // namespace fdnc::vtest

namespace fdnc::vtest {

// Stream I/O shared by the client transport and the server (AF_UNIX SOCK_STREAM).
// All return 0 or -errno: -EPIPE = the peer closed, -ETIMEDOUT = nothing for timeout_ms (< 0: no
// limit). Any fd that arrives by SCM_RIGHTS is collected into *fds (closed when fds is null), so
// a peer can never leak descriptors into us unnoticed.
int read_full(int sock, void* buf, size_t n, int timeout_ms, std::vector<int>* fds);
int write_full(int sock, const void* buf, size_t n, int timeout_ms);
// §8.1 fd passing: exactly one data byte (0) carrying one SCM_RIGHTS fd.
int send_fd(int sock, int fd, int timeout_ms);
// Reads that byte; exactly one fd must come with it (else every fd is closed and -EPROTO).
int recv_fd(int sock, int* fd, int timeout_ms);
void close_fds(std::vector<int>& fds);

} // namespace fdnc::vtest
