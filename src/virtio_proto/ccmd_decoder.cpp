#include "ccmd_decoder.h"

#include <algorithm>
#include <limits>

#include "ioctl_encoding.h"

namespace fdnc {

namespace {

using namespace wire;

uint32_t load_u32(const uint8_t* p) {
    uint32_t v;
    std::memcpy(&v, p, sizeof v); // the stream is only 4-byte aligned (§5.4)
    return v;
}

// Reads a u32 field of the fixed struct, zero when the record is shorter (H5 zero-extension).
uint32_t field_u32(std::span<const uint8_t> rec, size_t off) {
    return rec.size() >= off + 4 ? load_u32(rec.data() + off) : 0;
}

// §5.5: the only ioctls the host forwards through IOCTL_SIMPLE.
bool ioctl_allowed(uint32_t req) {
    if (ioc_type(req) != kDrmIoctlType || ioc_nr(req) < kDrmCommandBase) return false;
    const uint32_t nr = ioc_nr(req) - kDrmCommandBase;
    return nr == DRM_MSM_GET_PARAM || nr == DRM_MSM_SUBMITQUEUE_NEW || nr == DRM_MSM_SUBMITQUEUE_CLOSE;
}

// Response size in 64 bits so SUBMITQUEUE_QUERY's guest-chosen len cannot wrap.
uint64_t response_size64(uint32_t cmd, std::span<const uint8_t> rec) {
    switch (cmd) {
    case MSM_CCMD_IOCTL_SIMPLE: {
        const uint32_t req = field_u32(rec, offsetof(msm_ccmd_ioctl_simple_req, cmd));
        const uint64_t out = (ioc_dir(req) & kIocRead) ? ioc_size(req) : 0;
        return sizeof(msm_ccmd_ioctl_simple_rsp) + out;
    }
    case MSM_CCMD_GEM_CPU_PREP: return sizeof(msm_ccmd_gem_cpu_prep_rsp);
    case MSM_CCMD_SUBMITQUEUE_QUERY:
        return sizeof(msm_ccmd_submitqueue_query_rsp) +
               uint64_t{field_u32(rec, offsetof(msm_ccmd_submitqueue_query_req, len))};
    case MSM_CCMD_WAIT_FENCE: return sizeof(msm_ccmd_wait_fence_rsp);
    default: return 0;
    }
}

// Size relations inside one record (§5.4, §6.4); hdr.len is already framed (H2).
DecodeError check_payload(uint32_t cmd, std::span<const uint8_t> rec) {
    const uint64_t len = rec.size();
    switch (cmd) {
    case MSM_CCMD_IOCTL_SIMPLE: {
        const uint32_t req = field_u32(rec, offsetof(msm_ccmd_ioctl_simple_req, cmd));
        if (!ioctl_allowed(req) || ioc_size(req) > kIoctlSimplePayloadMax) return DecodeError::IoctlNotAllowed;
        if (len != sizeof(msm_ccmd_ioctl_simple_req) + uint64_t{ioc_size(req)})
            return DecodeError::PayloadSizeMismatch;
        return DecodeError::None;
    }
    case MSM_CCMD_GEM_SET_NAME: {
        const uint64_t n = field_u32(rec, offsetof(msm_ccmd_gem_set_name_req, len));
        return sizeof(msm_ccmd_gem_set_name_req) + n <= len ? DecodeError::None : DecodeError::PayloadSizeMismatch;
    }
    case MSM_CCMD_GEM_SUBMIT: {
        const uint64_t nr_bos = field_u32(rec, offsetof(msm_ccmd_gem_submit_req, nr_bos));
        const uint64_t nr_cmds = field_u32(rec, offsetof(msm_ccmd_gem_submit_req, nr_cmds));
        // u32 counts times 16/32 cannot overflow 64 bits.
        const uint64_t need = sizeof(msm_ccmd_gem_submit_req) + nr_bos * sizeof(drm_msm_gem_submit_bo) +
                              nr_cmds * sizeof(drm_msm_gem_submit_cmd);
        return need <= len ? DecodeError::None : DecodeError::PayloadSizeMismatch;
    }
    case MSM_CCMD_GEM_UPLOAD: {
        if (field_u32(rec, offsetof(msm_ccmd_gem_upload_req, pad)) != 0) return DecodeError::UploadPadNonZero;
        const uint64_t n = field_u32(rec, offsetof(msm_ccmd_gem_upload_req, len));
        return sizeof(msm_ccmd_gem_upload_req) + n <= len ? DecodeError::None : DecodeError::PayloadSizeMismatch;
    }
    case MSM_CCMD_SET_DEBUGINFO: {
        const uint64_t comm = field_u32(rec, offsetof(msm_ccmd_set_debuginfo_req, comm_len));
        const uint64_t cmdline = field_u32(rec, offsetof(msm_ccmd_set_debuginfo_req, cmdline_len));
        return sizeof(msm_ccmd_set_debuginfo_req) + comm + cmdline <= len ? DecodeError::None
                                                                          : DecodeError::PayloadSizeMismatch;
    }
    default:
        // Fixed-size requests: a short one is zero-extended by the host (H5), a long one is fine.
        return DecodeError::None;
    }
}

} // namespace

const char* decode_error_name(DecodeError e) {
    switch (e) {
    case DecodeError::None: return "None";
    case DecodeError::BufferUnaligned: return "BufferUnaligned";
    case DecodeError::TrailingBytes: return "TrailingBytes";
    case DecodeError::LenTooShort: return "LenTooShort";
    case DecodeError::LenUnaligned: return "LenUnaligned";
    case DecodeError::LenPastEnd: return "LenPastEnd";
    case DecodeError::RspOffUnaligned: return "RspOffUnaligned";
    case DecodeError::RspOffOutOfRange: return "RspOffOutOfRange";
    case DecodeError::UnknownCmd: return "UnknownCmd";
    case DecodeError::PayloadSizeMismatch: return "PayloadSizeMismatch";
    case DecodeError::IoctlNotAllowed: return "IoctlNotAllowed";
    case DecodeError::UploadPadNonZero: return "UploadPadNonZero";
    }
    return "Unknown";
}

std::span<const uint8_t> Ccmd::tail() const {
    const uint32_t fixed = cmd < MSM_CCMD_LAST ? kCcmdFixedReqSize[cmd] : sizeof(vdrm_ccmd_req);
    return bytes.subspan(std::min<size_t>(fixed, bytes.size()));
}

uint32_t ccmd_response_size(const Ccmd& c) {
    const uint64_t n = response_size64(c.cmd, c.bytes);
    return n > std::numeric_limits<uint32_t>::max() ? std::numeric_limits<uint32_t>::max()
                                                    : static_cast<uint32_t>(n);
}

CcmdDecoder::CcmdDecoder(std::span<const uint8_t> stream, uint32_t rsp_area_size)
    : stream_(stream), rsp_area_size_(rsp_area_size) {
    if (stream_.size() % 4 != 0) fail(DecodeError::BufferUnaligned); // H1
}

DecodeError CcmdDecoder::fail(DecodeError e) {
    error_ = e;
    error_offset_ = offset_;
    return e;
}

bool CcmdDecoder::next(Ccmd* out) {
    if (error_ != DecodeError::None) return false; // H6: nothing after a bad record runs
    const size_t remaining = stream_.size() - offset_;
    if (remaining == 0) return false;
    if (remaining < sizeof(vdrm_ccmd_req)) return fail(DecodeError::TrailingBytes), false; // H3

    const uint8_t* p = stream_.data() + offset_;
    const uint32_t cmd = load_u32(p + offsetof(vdrm_ccmd_req, cmd));
    const uint32_t len = load_u32(p + offsetof(vdrm_ccmd_req, len));
    const uint32_t seqno = load_u32(p + offsetof(vdrm_ccmd_req, seqno));
    const uint32_t rsp_off = load_u32(p + offsetof(vdrm_ccmd_req, rsp_off));

    // H2, in the host's order.
    if (len > remaining) return fail(DecodeError::LenPastEnd), false;
    if (len < sizeof(vdrm_ccmd_req)) return fail(DecodeError::LenTooShort), false;
    if (len % 4 != 0) return fail(DecodeError::LenUnaligned), false;
    if (rsp_off % 4 != 0) return fail(DecodeError::RspOffUnaligned), false;
    if (cmd == 0 || cmd >= MSM_CCMD_LAST) return fail(DecodeError::UnknownCmd), false; // H4

    const std::span<const uint8_t> rec = stream_.subspan(offset_, len);
    if (DecodeError e = check_payload(cmd, rec); e != DecodeError::None) return fail(e), false;

    // R2: the whole response must fit the area; no area yet means no response possible (H8).
    const uint64_t rsp_size = response_size64(cmd, rec);
    if (rsp_size > 0 && uint64_t{rsp_off} + rsp_size > rsp_area_size_)
        return fail(DecodeError::RspOffOutOfRange), false;

    out->cmd = cmd;
    out->seqno = seqno;
    out->rsp_off = rsp_off;
    out->rsp_size = static_cast<uint32_t>(rsp_size); // <= rsp_area_size_ here
    out->offset = offset_;
    out->bytes = rec;
    offset_ += len;
    return true;
}

DecodedStream decode_all(std::span<const uint8_t> stream, uint32_t rsp_area_size) {
    DecodedStream out;
    CcmdDecoder dec(stream, rsp_area_size);
    Ccmd c;
    while (dec.next(&c)) out.records.push_back(c);
    out.error = dec.error();
    out.error_offset = dec.error_offset();
    return out;
}

} // namespace fdnc
