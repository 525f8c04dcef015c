// A vector read with davix, as ROOT's and XRootD-over-HTTP readers make them (DavPosix::preadVec): the grid
// tools test compiles it against the system's davix and checks the bytes it reads against dd's.
//
//   davix-readv URL PROXY CA_DIR OFFSET:LENGTH...   (writes the fragments' bytes to stdout, in order)
#include <davix.hpp>
#include <fcntl.h>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

int main(int argc, char **argv) {
  if (argc < 5) {
    std::fprintf(stderr, "usage: davix-readv URL PROXY CA_DIR OFFSET:LENGTH...\n");
    return 2;
  }
  Davix::Context context;
  Davix::RequestParams params;
  Davix::DavixError *error = nullptr;
  Davix::X509Credential credential;
  if (credential.loadFromFilePEM(argv[2], argv[2], "", &error) < 0) {
    std::fprintf(stderr, "proxy: %s\n", error->getErrMsg().c_str());
    return 1;
  }
  params.setClientCertX509(credential);
  params.addCertificateAuthorityPath(argv[3]);
  params.setProtocol(Davix::RequestProtocol::Http); // plain HTTP semantics, no WebDAV stat first

  std::vector<Davix::DavIOVecInput> inputs;
  std::vector<std::vector<char>> buffers;
  for (int i = 4; i < argc; i++) {
    std::string spec(argv[i]);
    size_t colon = spec.find(':');
    Davix::DavIOVecInput input;
    input.diov_offset = std::strtoll(spec.substr(0, colon).c_str(), nullptr, 10);
    input.diov_size = std::strtoull(spec.substr(colon + 1).c_str(), nullptr, 10);
    buffers.emplace_back(input.diov_size);
    inputs.push_back(input);
  }
  for (size_t i = 0; i < inputs.size(); i++) inputs[i].diov_buffer = buffers[i].data();
  std::vector<Davix::DavIOVecOuput> outputs(inputs.size());

  Davix::DavPosix posix(&context);
  DAVIX_FD *fd = posix.open(&params, argv[1], O_RDONLY, &error);
  if (fd == nullptr) {
    std::fprintf(stderr, "open: %s\n", error->getErrMsg().c_str());
    return 1;
  }
  if (posix.preadVec(fd, inputs.data(), outputs.data(), inputs.size(), &error) < 0) {
    std::fprintf(stderr, "preadVec: %s\n", error->getErrMsg().c_str());
    return 1;
  }
  for (size_t i = 0; i < outputs.size(); i++) {
    if (outputs[i].diov_size != (dav_ssize_t)inputs[i].diov_size) {
      std::fprintf(stderr, "fragment %zu: %lld bytes, not %llu\n", i, (long long)outputs[i].diov_size,
                   (unsigned long long)inputs[i].diov_size);
      return 1;
    }
    std::fwrite(outputs[i].diov_buffer, 1, outputs[i].diov_size, stdout);
  }
  posix.close(fd, &error);
  return 0;
}
