// ripen list, ripen stats: what is in the system, for operators and scripts.
#include "cli.h"

namespace ripen::cli {

void add_inspect_commands(CLI::App& app, const Common& common, Actions& actions) {
  (void)app;
  (void)common;
  (void)actions;
}

}  // namespace ripen::cli
