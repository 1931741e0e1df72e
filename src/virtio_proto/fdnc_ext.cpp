#include "fdnc_ext.h"

#include <cstring>

namespace fdnc::ccmd {

Encoded fdnc_gem_get_iova(uint32_t res_id) {
    Encoded e;
    wire::fdnc_ccmd_gem_get_iova_req req{};
    req.hdr.cmd = wire::FDNC_CCMD_GEM_GET_IOVA;
    req.hdr.len = sizeof(req);
    req.res_id = res_id;
    e.bytes.resize(sizeof(req));
    std::memcpy(e.bytes.data(), &req, sizeof(req));
    e.rsp_size = kFdncGemGetIovaRspSize;
    return e;
}

bool parse_fdnc_gem_get_iova(std::span<const uint8_t> rsp, int32_t* ret, uint64_t* iova) {
    if (rsp.size() < sizeof(wire::fdnc_ccmd_gem_get_iova_rsp)) return false;
    wire::fdnc_ccmd_gem_get_iova_rsp r;
    std::memcpy(&r, rsp.data(), sizeof(r));
    if (r.hdr.len < sizeof(r)) return false; // the host stored a shorter response (R3)
    *ret = r.ret;
    *iova = r.iova;
    return true;
}

} // namespace fdnc::ccmd
