// SPDX-License-Identifier: Apache-2.0
#include "cert_poll/certificate_check.hpp"

#include "cert_poll/x509.hpp"

#include <memory>

#include <fmt/format.h>
#include <openssl/bio.h>
#include <openssl/x509.h>

namespace cert_poll {

namespace {

std::string name_text(const X509_NAME *name) {
  std::unique_ptr<BIO, decltype(&BIO_free)> bio(BIO_new(BIO_s_mem()),
                                                &BIO_free);
  if (bio == nullptr ||
      X509_NAME_print_ex(bio.get(), name, 0, XN_FLAG_RFC2253) < 0) {
    return "?";
  }
  char *data = nullptr;
  long length = BIO_get_mem_data(bio.get(), &data);
  return std::string(data, static_cast<std::size_t>(length));
}

Result<void> check_cert_raw(const x509::Certificate &leaf,
                            std::string_view cert_raw) {
  auto der = x509::decode_base64(cert_raw);
  if (!der) {
    return make_error(
        ErrorKind::check,
        fmt::format("cert_raw is not valid base64: {}", der.error().message));
  }
  if (*der != leaf.der()) {
    return make_error(ErrorKind::check,
                      "cert_raw is not the chain's first certificate; the CA "
                      "returned a leaf that differs from the chain's first PEM "
                      "block");
  }
  return {};
}

Result<void> check_key(const x509::Certificate &leaf, std::string_view csr) {
  auto request = x509::CertificateRequest::from_text(csr);
  if (!request) {
    return make_error(
        ErrorKind::check,
        fmt::format("the stored CSR is invalid, so the issued "
                    "certificate cannot be matched to its key: {}",
                    request.error().message));
  }
  if (!x509::same_public_key(leaf, *request)) {
    return make_error(
        ErrorKind::check,
        fmt::format("the public key of the issued certificate '{}' is not "
                    "the CSR's public key: the CA issued it for another "
                    "request",
                    name_text(X509_get_subject_name(leaf.get()))));
  }
  return {};
}

// The leaf's issuer must be the second certificate, because renewal_info
// hashes the second certificate's key as the issuer key.
Result<void> check_order(const x509::Certificate &leaf,
                         const x509::Certificate &issuer) {
  const X509_NAME *leaf_issuer = X509_get_issuer_name(leaf.get());
  const X509_NAME *issuer_subject = X509_get_subject_name(issuer.get());
  if (X509_NAME_cmp(leaf_issuer, issuer_subject) != 0) {
    return make_error(ErrorKind::check,
                      fmt::format("the chain is out of order: the leaf's "
                                  "issuer '{}' is not the subject '{}' of the "
                                  "second certificate; expected the leaf "
                                  "first, then its issuer",
                                  name_text(leaf_issuer),
                                  name_text(issuer_subject)));
  }
  return {};
}

// Each certificate must be signed by the next one's key. A matching name
// alone would let a forged issuer certificate through, and its key would
// then end up in renewal_info. The last certificate is not checked against
// a trust anchor: TLS to api_host is what makes the CA's response trusted.
Result<void> check_signatures(const std::vector<x509::Certificate> &chain) {
  for (std::size_t i = 0; i + 1 < chain.size(); ++i) {
    if (!x509::is_signed_by(chain[i], chain[i + 1])) {
      const X509_NAME *subject = X509_get_subject_name(chain[i].get());
      const X509_NAME *issuer = X509_get_subject_name(chain[i + 1].get());
      return make_error(
          ErrorKind::check,
          fmt::format("certificate {} of the chain ('{}') is not signed by "
                      "the key of certificate {} ('{}'): the CA sent a wrong "
                      "issuer certificate",
                      i + 1,
                      name_text(subject),
                      i + 2,
                      name_text(issuer)));
    }
  }
  return {};
}

std::string normalised_chain_pem(const std::vector<x509::Certificate> &chain) {
  std::string pem;
  for (const auto &cert : chain) {
    pem += x509::der_to_pem(cert.der());
  }
  return pem;
}

// Fills the columns derived from the leaf and, when the chain has one, its
// issuer.
Result<CheckedCertificate>
derive_columns(const std::vector<x509::Certificate> &chain) {
  const x509::Certificate &leaf = chain.front();
  CheckedCertificate checked;
  IssuedCertificate &out = checked.certificate;
  out.chain_pem = normalised_chain_pem(chain);
  out.cert_raw = x509::encode_base64(leaf.der());
  out.issue_uts = x509::not_before_unix(leaf);
  out.expire_uts = x509::not_after_unix(leaf);
  out.serial = x509::serial_hex(leaf);
  out.aki = x509::authority_key_identifier_hex(leaf);
  if (out.aki.empty()) {
    checked.warnings.emplace_back(
        "the leaf has no authority key identifier, so aki stays empty");
  }
  if (chain.size() < 2) {
    checked.warnings.emplace_back(
        "the chain contains only the leaf, so renewal_info (ACME Renewal "
        "Information) cannot be derived and stays empty");
    return checked;
  }
  auto info = x509::renewal_info(leaf, chain[1]);
  if (!info) {
    return make_error(ErrorKind::check,
                      fmt::format("renewal_info cannot be derived: {}",
                                  info.error().message));
  }
  out.renewal_info = std::move(*info);
  return checked;
}

} // namespace

Result<CheckedCertificate>
check_issued_certificate(std::string_view chain_pem,
                         std::string_view cert_raw,
                         std::string_view csr,
                         x509::CertificateCache *issuers) {
  auto chain = x509::parse_pem_chain(chain_pem, issuers);
  if (!chain) {
    return make_error(ErrorKind::check,
                      fmt::format("the issued chain does not parse: {}",
                                  chain.error().message));
  }
  const x509::Certificate &leaf = chain->front();
  // The given cert_raw is checked, then stored in its canonical one-line
  // form, which encodes the same DER.
  if (!cert_raw.empty()) {
    if (auto matched = check_cert_raw(leaf, cert_raw); !matched) {
      return std::unexpected(matched.error());
    }
  }
  // The order comes before the key, so that a chain with its issuer first
  // is reported as out of order rather than as a key mismatch.
  if (chain->size() >= 2) {
    if (auto ordered = check_order(leaf, (*chain)[1]); !ordered) {
      return std::unexpected(ordered.error());
    }
    if (auto signed_chain = check_signatures(*chain); !signed_chain) {
      return std::unexpected(signed_chain.error());
    }
  }
  if (auto matched = check_key(leaf, csr); !matched) {
    return std::unexpected(matched.error());
  }
  return derive_columns(*chain);
}

} // namespace cert_poll
