// plugd: the broker daemon. See docs/broker.md.
#include "daemon.h"

int main(int argc, char** argv) {
  return plugd::broker::DaemonMain(argc, argv);
}
