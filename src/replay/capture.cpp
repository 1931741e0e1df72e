#include "replay/capture.h"

#include <algorithm>
#include <cctype>
#include <numeric>
#include <set>
#include <utility>

namespace fdnc::rd {

namespace {

uint64_t fnv1a(uint64_t h, const uint8_t* p, size_t n) {
    for (size_t i = 0; i < n; ++i) h = (h ^ p[i]) * 0x100000001b3ull;
    return h;
}

uint64_t end_of(uint64_t iova, uint64_t size) {
    const uint64_t e = iova + size;
    return e < iova ? UINT64_MAX : e;   // saturate; the loader rejects real overflow
}

struct Range {
    uint64_t iova;
    uint64_t size;
    bool from_decl;
};

// Sorted, disjoint allocations covering the ranges; out[i] = allocation of ranges[i].
std::vector<SubmitBuffer> merge_ranges(const std::vector<Range>& ranges, std::vector<uint32_t>& out,
                                       uint64_t& merged) {
    std::vector<uint32_t> order(ranges.size());
    std::iota(order.begin(), order.end(), 0u);
    std::stable_sort(order.begin(), order.end(),
                     [&](uint32_t a, uint32_t b) { return ranges[a].iova < ranges[b].iova; });
    std::vector<SubmitBuffer> bufs;
    out.assign(ranges.size(), kNoBuffer);
    merged = 0;
    for (uint32_t i : order) {
        const Range& r = ranges[i];
        const uint64_t e = end_of(r.iova, r.size);
        if (!bufs.empty() && r.iova < end_of(bufs.back().iova, bufs.back().size)) {
            SubmitBuffer& last = bufs.back();   // sorted + disjoint: only the last can overlap
            last.size = std::max(end_of(last.iova, last.size), e) - last.iova;
            last.implicit = last.implicit && !r.from_decl;
            ++merged;
        } else {
            SubmitBuffer b;
            b.iova = r.iova;
            b.size = r.size;
            b.implicit = !r.from_decl;
            bufs.push_back(std::move(b));
        }
        out[i] = static_cast<uint32_t>(bufs.size() - 1);
    }
    return bufs;
}

bool contains(const std::vector<SubmitBuffer>& bufs, uint64_t iova, uint64_t size, uint32_t& idx) {
    auto it = std::upper_bound(bufs.begin(), bufs.end(), iova,
                               [](uint64_t v, const SubmitBuffer& b) { return v < b.iova; });
    if (it == bufs.begin()) return false;
    --it;
    if (end_of(iova, size) > end_of(it->iova, it->size)) return false;
    idx = static_cast<uint32_t>(it - bufs.begin());
    return true;
}

// Merge a submit's decls into disjoint allocations and map its cmdstreams into them. A
// cmdstream no decl covers gets an implicit allocation of exactly its range: kernels before the
// 2025 msm_rd rework tested the DUMP flag of bo[cmd index] instead of bo[cmd->idx], so a
// cmdstream range can be missing from real captures (fd-clouds.rd.gz has this).
void resolve_submit(Submit& s, Anomalies& an, uint64_t align) {
    // Allocations cover whole alignment units: an iova can only be bound at page granularity,
    // and kernel cmd-range snapshots (§9.4) are neither page-aligned nor page-sized.
    auto range = [align](uint64_t iova, uint64_t size, bool from_decl) {
        const uint64_t lo = iova & ~(align - 1);
        const uint64_t e = end_of(iova, size);
        const uint64_t hi = e > UINT64_MAX - (align - 1) ? UINT64_MAX : (e + align - 1) & ~(align - 1);
        return Range{lo, hi - lo, from_decl};
    };
    std::vector<Range> ranges;
    std::vector<uint32_t> decl_range(s.decls.size(), kNoBuffer);
    for (uint32_t i = 0; i < s.decls.size(); ++i) {
        if (s.decls[i].size == 0) {
            ++an.zero_size_decls;
            continue;
        }
        decl_range[i] = static_cast<uint32_t>(ranges.size());
        ranges.push_back(range(s.decls[i].iova, s.decls[i].size, true));
    }
    std::vector<uint32_t> alloc_of;
    uint64_t merged = 0;
    s.buffers = merge_ranges(ranges, alloc_of, merged);
    const uint64_t merged_decls = merged;

    bool added = false;
    for (const CmdStream& c : s.cmds) {
        uint32_t idx;
        if (c.size_bytes == 0 || contains(s.buffers, c.iova, c.size_bytes, idx)) continue;
        ++an.cmds_outside_buffers;
        ranges.push_back(range(c.iova, c.size_bytes, false));
        added = true;
    }
    if (added) s.buffers = merge_ranges(ranges, alloc_of, merged);
    an.merged_decls += merged_decls;

    // Uploads in file order, so a later decl's bytes land over an earlier one's (as RP5 copies).
    for (uint32_t i = 0; i < s.decls.size(); ++i) {
        const BufferDecl& d = s.decls[i];
        if (decl_range[i] == kNoBuffer || !d.contents) continue;
        SubmitBuffer& b = s.buffers[alloc_of[decl_range[i]]];
        b.uploads.push_back(Upload{d.iova - b.iova, *d.contents});
    }
    for (CmdStream& c : s.cmds) {
        uint32_t idx;
        c.buffer = kNoBuffer;
        if (!contains(s.buffers, c.iova, c.size_bytes, idx)) continue;   // only size-0 outside
        c.buffer = idx;
        c.offset_in_buffer = c.iova - s.buffers[idx].iova;
        s.buffers[idx].has_cmdstream = true;
    }
}

uint64_t uploads_hash(const Capture& c, const SubmitBuffer& b) {
    uint64_t h = 0xcbf29ce484222325ull;
    for (const Upload& u : b.uploads) {
        h = fnv1a(h, reinterpret_cast<const uint8_t*>(&u.offset_in_buffer), sizeof u.offset_in_buffer);
        const auto d = c.data(u.data);
        h = fnv1a(h, d.data(), d.size());
    }
    return h;
}

// Lifetimes: the open set holds disjoint ranges keyed by start. Declaring a range that
// overlaps a different open range closes that one, so its next use starts a new lifetime.
void derive_lifetimes(Capture& c) {
    std::map<uint64_t, uint32_t> open;          // iova -> lifetime
    std::vector<std::optional<uint64_t>> last_hash;
    for (uint32_t si = 0; si < c.submits.size(); ++si) {
        for (SubmitBuffer& b : c.submits[si].buffers) {
            const uint64_t e = end_of(b.iova, b.size);
            auto same = open.find(b.iova);
            uint32_t lt;
            if (same != open.end() && c.lifetimes[same->second].size == b.size) {
                lt = same->second;
            } else {
                auto it = open.lower_bound(b.iova);
                if (it != open.begin()) {
                    auto prev = std::prev(it);
                    const BufferLifetime& p = c.lifetimes[prev->second];
                    if (end_of(p.iova, p.size) > b.iova) it = prev;
                }
                while (it != open.end() && it->first < e) it = open.erase(it);
                lt = static_cast<uint32_t>(c.lifetimes.size());
                c.lifetimes.push_back(BufferLifetime{b.iova, b.size, si, si, 0, 0, false});
                last_hash.emplace_back();
                open.emplace(b.iova, lt);
            }
            BufferLifetime& L = c.lifetimes[lt];
            L.last_submit = si;
            ++L.uses;
            b.lifetime = lt;
            if (!b.uploads.empty()) {
                ++L.uploads;
                const uint64_t h = uploads_hash(c, b);
                if (last_hash[lt] && *last_hash[lt] != h) L.contents_change = true;
                last_hash[lt] = h;
            }
        }
    }
}

} // namespace

std::string process_name(std::string_view t) {
    // Kernel form "comm/pid: fence=N" (§9.2): cut at the last '/' followed by digits and ':'.
    for (size_t slash = t.rfind('/'); slash != std::string_view::npos && slash > 0;
         slash = t.rfind('/', slash - 1)) {
        size_t i = slash + 1;
        while (i < t.size() && std::isdigit(static_cast<unsigned char>(t[i]))) ++i;
        if (i > slash + 1 && i < t.size() && t[i] == ':') return std::string(t.substr(0, slash));
        if (slash == 0) break;
    }
    return std::string(t);
}

void CaptureBuilder::set_alignment(uint64_t align) {
    align_ = (align != 0 && (align & (align - 1)) == 0) ? align : 1;
}

void CaptureBuilder::cmd_text(std::string text) {
    last_cmd_ = std::move(text);
    const std::string name = process_name(last_cmd_);
    if (std::find(c_.processes.begin(), c_.processes.end(), name) == c_.processes.end())
        c_.processes.push_back(name);
}

void CaptureBuilder::gpuaddr(uint64_t iova, uint64_t size, uint64_t file_offset) {
    if (!open_.cmds.empty()) close_submit();   // RP4
    if (!open_has_decl_or_cmd_) open_.file_offset = file_offset;
    open_has_decl_or_cmd_ = true;
    open_.decls.push_back(BufferDecl{iova, size, std::nullopt});
    bound_ = true;
}

std::optional<uint64_t> CaptureBuilder::pending_decl_size() const {
    if (!bound_ || open_.decls.empty()) return std::nullopt;
    return open_.decls.back().size;
}

bool CaptureBuilder::contents_in_store(uint64_t offset, uint64_t size) {
    if (!bound_ || open_.decls.empty()) {
        problem_ = "RD_BUFFER_CONTENTS without a preceding RD_GPUADDR";
        return false;
    }
    BufferDecl& d = open_.decls.back();
    if (d.contents) {
        problem_ = "a second RD_BUFFER_CONTENTS for the same RD_GPUADDR";
        return false;
    }
    if (size > d.size) {
        problem_ = "RD_BUFFER_CONTENTS of " + std::to_string(size) + " bytes for a buffer of " +
                   std::to_string(d.size) + " bytes";
        return false;
    }
    d.contents = ByteRange{offset, size};
    return true;
}

bool CaptureBuilder::contents(std::span<const uint8_t> data) {
    const uint64_t off = c_.bytes.size();
    if (!pending_decl_size() || data.size() > *pending_decl_size()) {
        // Let contents_in_store name the problem without touching the store.
        return contents_in_store(off, data.size());
    }
    c_.bytes.insert(c_.bytes.end(), data.begin(), data.end());
    return contents_in_store(off, data.size());
}

void CaptureBuilder::cmdstream(uint64_t iova, uint32_t size_bytes, uint64_t file_offset) {
    if (!open_has_decl_or_cmd_) open_.file_offset = file_offset;
    open_has_decl_or_cmd_ = true;
    if (open_.cmds.empty()) open_.cmd = last_cmd_;   // RP6: the filter sees the last RD_CMD
    open_.cmds.push_back(CmdStream{iova, size_bytes, kNoBuffer, 0});
}

void CaptureBuilder::close_submit() {
    c_.submits.push_back(std::move(open_));
    open_ = Submit{};
    open_has_decl_or_cmd_ = false;
    bound_ = false;
}

Capture CaptureBuilder::finish() && {
    if (!open_.cmds.empty()) {
        close_submit();
    } else {
        // No cmdstream follows these decls, so there is no submit to replay (RP4/RP7).
        c_.anomalies.trailing_decls += open_.decls.size();
    }
    for (Submit& s : c_.submits) resolve_submit(s, c_.anomalies, align_);
    derive_lifetimes(c_);
    return std::move(c_);
}

CaptureStats Capture::stats() const {
    CaptureStats st;
    st.submits = submits.size();
    st.buffers = lifetimes.size();
    st.content_bytes = bytes.size();
    std::set<std::pair<uint64_t, uint64_t>> ids;
    std::vector<int64_t> dn(submits.size() + 1, 0);
    std::vector<int64_t> db(submits.size() + 1, 0);
    bool any = false;
    for (const BufferLifetime& l : lifetimes) {
        ids.emplace(l.iova, l.size);
        st.buffer_bytes += l.size;
        ++dn[l.first_submit];
        --dn[l.last_submit + 1];
        db[l.first_submit] += static_cast<int64_t>(l.size);
        db[l.last_submit + 1] -= static_cast<int64_t>(l.size);
        st.iova_min = any ? std::min(st.iova_min, l.iova) : l.iova;
        st.iova_end = std::max(st.iova_end, end_of(l.iova, l.size));
        any = true;
    }
    st.identities = ids.size();
    int64_t n = 0, b = 0;
    for (size_t i = 0; i < submits.size(); ++i) {
        n += dn[i];
        b += db[i];
        st.max_live_buffers = std::max<uint64_t>(st.max_live_buffers, static_cast<uint64_t>(n));
        st.max_live_bytes = std::max<uint64_t>(st.max_live_bytes, static_cast<uint64_t>(b));
    }
    for (const Submit& s : submits) {
        st.cmdstreams += s.cmds.size();
        st.decls += s.decls.size();
    }
    for (const auto& [type, count] : skipped_sections) st.skipped_sections += count;
    return st;
}

LifetimeEvents lifetime_events(const Capture& c) {
    LifetimeEvents ev;
    ev.alloc_before.resize(c.submits.size());
    ev.free_after.resize(c.submits.size());
    // Lifetimes are created in (submit, iova) order, so both lists come out sorted by iova
    // within a submit for alloc_before; free_after is sorted explicitly.
    for (uint32_t i = 0; i < c.lifetimes.size(); ++i) {
        ev.alloc_before[c.lifetimes[i].first_submit].push_back(i);
        ev.free_after[c.lifetimes[i].last_submit].push_back(i);
    }
    for (auto& v : ev.free_after)
        std::sort(v.begin(), v.end(),
                  [&](uint32_t a, uint32_t b) { return c.lifetimes[a].iova < c.lifetimes[b].iova; });
    return ev;
}

bool rp6_default_skips(std::string_view t) {
    for (std::string_view p : {"fdperf", "chrome", "surfaceflinger", "X"})
        if (t.substr(0, p.size()) == p) return true;
    return false;
}

std::string capture_diff(const Capture& a, const Capture& b) {
    auto num = [](uint64_t v) { return std::to_string(v); };
    if (a.gpu_id != b.gpu_id) return "gpu_id " + num(a.gpu_id) + " vs " + num(b.gpu_id);
    if (a.chip_id != b.chip_id) return "chip_id differs";
    if (a.submits.size() != b.submits.size())
        return "submit count " + num(a.submits.size()) + " vs " + num(b.submits.size());
    for (size_t i = 0; i < a.submits.size(); ++i) {
        const Submit& x = a.submits[i];
        const Submit& y = b.submits[i];
        const std::string at = "submit " + num(i) + ": ";
        if (x.cmd != y.cmd) return at + "cmd '" + x.cmd + "' vs '" + y.cmd + "'";
        if (x.decls.size() != y.decls.size())
            return at + "decl count " + num(x.decls.size()) + " vs " + num(y.decls.size());
        for (size_t j = 0; j < x.decls.size(); ++j) {
            const BufferDecl& p = x.decls[j];
            const BufferDecl& q = y.decls[j];
            const std::string dj = at + "decl " + num(j) + ": ";
            if (p.iova != q.iova || p.size != q.size) return dj + "iova/size differ";
            if (p.contents.has_value() != q.contents.has_value()) return dj + "contents presence differs";
            if (p.contents) {
                const auto u = a.data(*p.contents);
                const auto v = b.data(*q.contents);
                if (!std::equal(u.begin(), u.end(), v.begin(), v.end())) return dj + "contents differ";
            }
        }
        if (x.cmds.size() != y.cmds.size())
            return at + "cmdstream count " + num(x.cmds.size()) + " vs " + num(y.cmds.size());
        for (size_t j = 0; j < x.cmds.size(); ++j)
            if (x.cmds[j].iova != y.cmds[j].iova || x.cmds[j].size_bytes != y.cmds[j].size_bytes)
                return at + "cmdstream " + num(j) + " differs";
    }
    if (a.wrbuffers.size() != b.wrbuffers.size()) return "wrbuffer count differs";
    for (size_t i = 0; i < a.wrbuffers.size(); ++i) {
        const WrBuffer& p = a.wrbuffers[i];
        const WrBuffer& q = b.wrbuffers[i];
        if (p.iova != q.iova || p.size != q.size || p.clear != q.clear || p.name != q.name)
            return "wrbuffer " + num(i) + " differs";
    }
    return {};
}

} // namespace fdnc::rd
