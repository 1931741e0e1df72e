#include "transports/transport_uri.h"

#include "transports/virtgpu_transport.h"
#include "transports/vtest_transport.h"

namespace fdnc {

namespace {

// "scheme", "scheme:" or "scheme:rest" -> rest; nullopt when uri has another scheme.
std::optional<std::string_view> after_scheme(std::string_view uri, std::string_view scheme) {
    if (uri.substr(0, scheme.size()) != scheme) return std::nullopt;
    uri.remove_prefix(scheme.size());
    if (uri.empty()) return uri;
    if (uri[0] != ':') return std::nullopt;
    return uri.substr(1);
}

} // namespace

std::optional<TransportUri> parse_transport_uri(std::string_view uri, std::string* error) {
    TransportUri out;
    if (uri.empty() || after_scheme(uri, "inproc")) {
        auto cfg = parse_inproc_uri(uri.empty() ? std::string_view("inproc") : uri, error);
        if (!cfg) return std::nullopt;
        out.kind = TransportKind::Inproc;
        out.inproc = *cfg;
        return out;
    }
    if (auto rest = after_scheme(uri, "vtest")) {
        out.kind = TransportKind::Vtest;
        out.path = std::string(*rest);
        return out;
    }
    if (auto rest = after_scheme(uri, "virtgpu")) {
        out.kind = TransportKind::Virtgpu;
        out.path = std::string(*rest);
        return out;
    }
    if (error) *error = "unknown transport in URI '" + std::string(uri) + "' (want inproc:, vtest: or virtgpu:)";
    return std::nullopt;
}

std::unique_ptr<Transport> open_transport(std::string_view uri, std::string* error, const InprocOpener& inproc) {
    auto parsed = parse_transport_uri(uri, error);
    if (!parsed) return nullptr;
    switch (parsed->kind) {
    case TransportKind::Inproc: {
        if (inproc) return inproc(parsed->inproc, error);
        const InprocHostFactory host = registered_inproc_host();
        if (!host) {
            if (error)
                *error = "inproc: this program links no in-process host (libfdnc ships without one: use "
                         "vtest: or virtgpu:, or link host_sim's in-process host, e.g. libfdnc-inproc)";
            return nullptr;
        }
        auto link = host(parsed->inproc, error);
        if (!link) return nullptr;
        return std::make_unique<InprocTransport>(std::move(link));
    }
    case TransportKind::Vtest: {
        VtestOptions o;
        o.socket_path = parsed->path;
        return VtestTransport::connect(o, error);
    }
    case TransportKind::Virtgpu: {
        VirtgpuOptions o;
        o.node = parsed->path;
        return VirtgpuTransport::open(o, error);
    }
    }
    return nullptr;
}

} // namespace fdnc
