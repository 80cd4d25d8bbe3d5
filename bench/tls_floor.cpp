// wslb-tls-floor: where the heap of an idle TLS connection goes. Opens N server connections
// with wslb's own server context and engine (one ECDSA P-256 certificate made here, ticket keys
// as a worker has them), each against an in-memory OpenSSL client, runs the handshake and one
// small exchange each way, and then counts what OpenSSL still holds for the server side:
// every allocation goes through CRYPTO_set_mem_functions, tagged with the source file and line
// OpenSSL passes, and only those made while a server-side call runs are counted.
//
//   wslb-tls-floor [-n 1000] [--variant baseline|no-tickets|tls12|parked] [--top 25]
//
// `parked` parks every connection after its exchange (tls::engine::park: the SSL object is
// freed) and adds what the parked streams hold (allocated by wslb, not OpenSSL) to the count.
//
// Heap bytes are malloc_usable_size + 8 (glibc's chunk header), the cost malloc really pays.
#include <malloc.h>
#include <openssl/crypto.h>
#include <openssl/ec.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <map>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

#include "shm/layout.h"
#include "tls/engine.h"
#include "tls/server_context.h"
#include "tls/ticket_keys.h"

namespace {

struct allocation {
  std::size_t bytes;
  const char* file;
  int line;
};

// Set while a server-side call runs: only its allocations are counted.
bool counting = false;
std::unordered_map<void*, allocation>* live = nullptr;

std::size_t heap_bytes(void* p) { return malloc_usable_size(p) + 8; }

void note(void* p, const char* file, int line) {
  if (p != nullptr && counting) (*live)[p] = allocation{heap_bytes(p), file, line};
}

void* counted_malloc(std::size_t n, const char* file, int line) {
  void* p = std::malloc(n);
  note(p, file, line);
  return p;
}

void* counted_realloc(void* old, std::size_t n, const char* file, int line) {
  const bool was_counted = old != nullptr && live->erase(old) > 0;
  void* p = std::realloc(old, n);
  if (was_counted || counting) {
    if (p != nullptr) (*live)[p] = allocation{heap_bytes(p), file, line};
  }
  return p;
}

void counted_free(void* p, const char*, int) {
  if (p != nullptr) live->erase(p);
  std::free(p);
}

struct server_scope {
  server_scope() { counting = true; }
  ~server_scope() { counting = false; }
};

std::string write_pem_pair(const std::filesystem::path& dir, std::string& key_file) {
  EVP_PKEY* key = EVP_EC_gen("P-256");
  X509* x = X509_new();
  X509_set_version(x, 2);
  ASN1_INTEGER_set(X509_get_serialNumber(x), 1);
  X509_gmtime_adj(X509_getm_notBefore(x), -3600);
  X509_gmtime_adj(X509_getm_notAfter(x), 30L * 86400);
  X509_set_pubkey(x, key);
  X509_NAME* name = X509_get_subject_name(x);
  X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC,
                             reinterpret_cast<const unsigned char*>("bench.test"), -1, -1, 0);
  X509_set_issuer_name(x, name);
  X509_sign(x, key, EVP_sha256());
  const std::string cert_file = (dir / "bench.pem").string();
  key_file = (dir / "bench.key").string();
  std::FILE* f = std::fopen(cert_file.c_str(), "w");
  PEM_write_X509(f, x);
  std::fclose(f);
  f = std::fopen(key_file.c_str(), "w");
  PEM_write_PrivateKey(f, key, nullptr, nullptr, 0, nullptr, nullptr);
  std::fclose(f);
  X509_free(x);
  EVP_PKEY_free(key);
  return cert_file;
}

struct client {
  SSL* ssl = nullptr;
  BIO* in = nullptr;   // what the server wrote
  BIO* out = nullptr;  // what the client writes
  client(SSL_CTX* ctx) {
    ssl = SSL_new(ctx);
    in = BIO_new(BIO_s_mem());
    out = BIO_new(BIO_s_mem());
    BIO_set_mem_eof_return(in, -1);
    SSL_set_bio(ssl, in, out);
    SSL_set_connect_state(ssl);
    SSL_set_tlsext_host_name(ssl, "bench.test");
  }
  ~client() { SSL_free(ssl); }
  std::string take() {
    std::string s;
    char buf[16384];
    int n = 0;
    while ((n = BIO_read(out, buf, sizeof buf)) > 0) s.append(buf, static_cast<std::size_t>(n));
    return s;
  }
  void give(std::string& bytes) {
    if (!bytes.empty()) BIO_write(in, bytes.data(), static_cast<int>(bytes.size()));
    bytes.clear();
  }
  void drain_plain() {
    char buf[16384];
    std::size_t n = 0;
    while (SSL_read_ex(ssl, buf, sizeof buf, &n) == 1) {
    }
    ERR_clear_error();
  }
};

// Feeds the client's bytes to the server engine and reads until it needs more.
void serve(wslb::tls::engine& e, wslb::tls::engine_io& io, const std::string& bytes) {
  server_scope scope;
  e.feed(io, bytes.data(), bytes.size());
  char plain[4096];
  for (;;) {
    const wslb::tls::read_result r = e.read(plain, sizeof plain);
    if (r.status != wslb::tls::read_status::data) return;
  }
}

bool connect_one(client& c, wslb::tls::engine& e, wslb::tls::engine_io& io) {
  for (int round = 0; round < 10; ++round) {
    const int r = SSL_do_handshake(c.ssl);
    const int client_error = r == 1 ? SSL_ERROR_NONE : SSL_get_error(c.ssl, r);
    serve(e, io, c.take());
    c.give(io.output());
    if (r == 1 && e.handshake_done()) break;
    if (r != 1 && client_error != SSL_ERROR_WANT_READ) {
      std::fprintf(stderr, "wslb-tls-floor: client handshake failed (%d): %s\n", client_error,
                   wslb::tls::engine::last_error().c_str());
      return false;
    }
  }
  if (!e.handshake_done()) {
    std::fprintf(stderr, "wslb-tls-floor: server handshake unfinished: %s\n",
                 wslb::tls::engine::last_error().c_str());
    return false;
  }
  c.drain_plain();  // tickets
  // One request and one answer, as a WebSocket upgrade makes.
  static const char request[] = "GET / HTTP/1.1\r\nHost: bench.test\r\n\r\n";
  std::size_t n = 0;
  SSL_write_ex(c.ssl, request, sizeof request - 1, &n);
  serve(e, io, c.take());
  {
    server_scope scope;
    static const char answer[] = "HTTP/1.1 101 Switching Protocols\r\n\r\n";
    e.write(answer, sizeof answer - 1);
  }
  c.give(io.output());
  c.drain_plain();
  return true;
}

}  // namespace

int main(int argc, char** argv) {
  std::size_t n = 1000;
  std::string variant = "baseline";
  std::size_t top = 25;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string a = argv[i];
    if (a == "-n") n = std::strtoul(argv[i + 1], nullptr, 10);
    else if (a == "--variant") variant = argv[i + 1];
    else if (a == "--top") top = std::strtoul(argv[i + 1], nullptr, 10);
    else {
      std::fprintf(stderr, "wslb-tls-floor: unknown option %s\n", a.c_str());
      return 2;
    }
  }
  live = new std::unordered_map<void*, allocation>();
  CRYPTO_set_mem_functions(counted_malloc, counted_realloc, counted_free);

  char tmpl[] = "/tmp/wslb-tls-floor-XXXXXX";
  if (mkdtemp(tmpl) == nullptr) return 1;
  const std::filesystem::path dir = tmpl;
  wslb::tls::server_settings settings;
  wslb::tls::certificate_files files;
  files.cert_file = write_pem_pair(dir, files.key_file);
  settings.certificates.push_back(files);
  if (variant != "tls12") settings.min_version = wslb::tls::tls_version::tls1_3;
  std::string error;
  const std::int64_t now_ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                                 std::chrono::system_clock::now().time_since_epoch())
                                 .count();
  auto server = wslb::tls::server_context::load(settings, now_ms, error);
  std::filesystem::remove_all(dir);
  if (!server) {
    std::fprintf(stderr, "wslb-tls-floor: %s\n", error.c_str());
    return 1;
  }
  auto keys = std::make_unique<wslb::shm::tls_section>();
  wslb::tls::rotate_ticket_keys(*keys, now_ms);
  server->use_ticket_keys(keys.get());
  if (variant == "no-tickets") SSL_CTX_set_options(server->default_context(), SSL_OP_NO_TICKET);

  SSL_CTX* client_ctx = SSL_CTX_new(TLS_client_method());
  if (variant == "tls12") SSL_CTX_set_max_proto_version(client_ctx, TLS1_2_VERSION);

  wslb::tls::engine_io io;
  std::vector<std::unique_ptr<wslb::tls::engine>> engines;
  std::size_t made = 0;
  live->clear();
  for (std::size_t i = 0; i < n; ++i) {
    auto e = std::make_unique<wslb::tls::engine>();
    {
      server_scope scope;
      if (!e->open(server->default_context(), io)) return 1;
    }
    client c(client_ctx);
    if (connect_one(c, *e, io)) ++made;
    engines.push_back(std::move(e));
  }

  std::map<std::string, std::pair<std::size_t, std::size_t>> by_file, by_line;
  std::size_t total = 0, count = 0;
  if (variant == "parked") {
    std::size_t parked = 0;
    for (auto& e : engines) {
      server_scope scope;
      if (!e->park()) continue;
      ++parked;
      auto& f = by_file["wslb parked_stream"];
      f.first += heap_bytes(const_cast<wslb::tls::parked_stream*>(e->stream_for_test()));
      ++f.second;
    }
    by_line["wslb parked_stream"] = by_file["wslb parked_stream"];
    total += by_file["wslb parked_stream"].first;
    count += parked;
    std::printf("parked %zu of %zu connections (sizeof(parked_stream) %zu bytes)\n", parked, n,
                sizeof(wslb::tls::parked_stream));
  }
  for (const auto& [p, a] : *live) {
    const std::string file = a.file != nullptr ? a.file : "?";
    auto& f = by_file[file];
    f.first += a.bytes;
    ++f.second;
    auto& l = by_line[file + ":" + std::to_string(a.line)];
    l.first += a.bytes;
    ++l.second;
    total += a.bytes;
    ++count;
  }
  std::printf("variant %s: %zu connections established, SSL version %s\n", variant.c_str(), made,
              engines.empty() ? "-" : std::string(engines.front()->version()).c_str());
  std::printf("OpenSSL heap held for the server side: %.2f KiB per connection, %.1f "
              "allocations per connection\n",
              static_cast<double>(total) / 1024 / static_cast<double>(n),
              static_cast<double>(count) / static_cast<double>(n));
  auto print = [&](const char* title, const auto& m) {
    std::vector<std::pair<std::size_t, std::string>> rows;
    for (const auto& [k, v] : m) rows.emplace_back(v.first, k);
    std::sort(rows.rbegin(), rows.rend());
    std::printf("\n%s (bytes per connection, allocations per connection):\n", title);
    for (std::size_t i = 0; i < rows.size() && i < top; ++i) {
      const auto& v = m.at(rows[i].second);
      std::printf("  %8.0f  %5.1f  %s\n",
                  static_cast<double>(v.first) / static_cast<double>(n),
                  static_cast<double>(v.second) / static_cast<double>(n), rows[i].second.c_str());
    }
  };
  print("by source file", by_file);
  print("by source line", by_line);
  engines.clear();
  SSL_CTX_free(client_ctx);
  return made == n ? 0 : 1;
}
