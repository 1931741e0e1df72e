// parse_inproc_uri: the "inproc:key=value,..." spelling of an InprocConfig (tools take it as
// --transport). Strict on purpose: a typo in a benchmark knob must not silently run defaults.
#include <cctype>
#include <limits>

#include "transports/inproc_transport.h"

namespace fdnc {

namespace {

bool parse_number(std::string_view s, uint64_t* out) {
    if (s.empty()) return false;
    uint64_t mult = 1;
    switch (std::toupper(static_cast<unsigned char>(s.back()))) {
    case 'K': mult = 1ull << 10; break;
    case 'M': mult = 1ull << 20; break;
    case 'G': mult = 1ull << 30; break;
    default: break;
    }
    if (mult != 1) s.remove_suffix(1);
    unsigned base = 10;
    if (s.size() > 2 && s[0] == '0' && (s[1] == 'x' || s[1] == 'X')) {
        base = 16;
        s.remove_prefix(2);
    }
    if (s.empty()) return false;
    uint64_t v = 0;
    for (char c : s) {
        unsigned d;
        if (c >= '0' && c <= '9') d = c - '0';
        else if (base == 16 && std::isxdigit(static_cast<unsigned char>(c))) d = std::tolower(c) - 'a' + 10;
        else return false;
        if (v > (std::numeric_limits<uint64_t>::max() - d) / base) return false;
        v = v * base + d;
    }
    if (v > std::numeric_limits<uint64_t>::max() / mult) return false;
    *out = v * mult;
    return true;
}

} // namespace

std::optional<InprocConfig> parse_inproc_uri(std::string_view uri, std::string* error) {
    auto fail = [&](std::string why) -> std::optional<InprocConfig> {
        if (error) *error = std::move(why);
        return std::nullopt;
    };
    constexpr std::string_view scheme = "inproc";
    if (uri.substr(0, scheme.size()) != scheme) return fail("not an inproc uri (expected 'inproc:...')");
    uri.remove_prefix(scheme.size());
    if (!uri.empty()) {
        if (uri[0] != ':') return fail("expected ':' after 'inproc'");
        uri.remove_prefix(1);
    }
    InprocConfig cfg;
    while (!uri.empty()) {
        const size_t comma = uri.find(',');
        std::string_view kv = uri.substr(0, comma);
        uri = comma == std::string_view::npos ? std::string_view{} : uri.substr(comma + 1);
        if (kv.empty()) continue;
        const size_t eq = kv.find('=');
        if (eq == std::string_view::npos) return fail("missing '=' in '" + std::string(kv) + "'");
        const std::string key(kv.substr(0, eq));
        uint64_t v = 0;
        if (!parse_number(kv.substr(eq + 1), &v))
            return fail("bad number '" + std::string(kv.substr(eq + 1)) + "' for '" + key + "'");
        auto u32 = [&](uint32_t* dst) {
            if (v > std::numeric_limits<uint32_t>::max()) return false;
            *dst = static_cast<uint32_t>(v);
            return true;
        };
        bool ok = true;
        if (key == "rtt_us") ok = u32(&cfg.rtt_us);
        else if (key == "gpu_us") ok = u32(&cfg.gpu_us);
        else if (key == "gpu_id") ok = u32(&cfg.gpu_id);
        else if (key == "ctx_id") ok = u32(&cfg.ctx_id);
        else if (key == "va_start") cfg.va_start = v;
        else if (key == "va_size") cfg.va_size = v;
        else if (key == "chip_id") cfg.chip_id = v;
        else if (key == "oom_after") cfg.oom_after = v;
        else if (key == "poll_us") ok = u32(&cfg.poll_us);
        else if (key == "stall") ok = v <= 1 && (cfg.stall = v == 1, true);
        else return fail("unknown key '" + key + "'");
        if (!ok) return fail("value of '" + key + "' does not fit 32 bits");
    }
    return cfg;
}

} // namespace fdnc
