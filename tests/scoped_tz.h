// ScopedTz: TZ set for a scope (and tzset() called), the old value restored after; for tests
// of local-time rules (repo/retention.h) that must not depend on the machine's zone.
#ifndef HOTSNAP_TESTS_SCOPED_TZ_H_
#define HOTSNAP_TESTS_SCOPED_TZ_H_

#include <stdlib.h>
#include <time.h>

#include <optional>
#include <string>

namespace hotsnap::testing {

class ScopedTz {
 public:
  explicit ScopedTz(const std::string& tz) {
    const char* old = getenv("TZ");
    if (old != nullptr) old_ = old;
    setenv("TZ", tz.c_str(), 1);
    tzset();
  }
  ~ScopedTz() {
    if (old_) {
      setenv("TZ", old_->c_str(), 1);
    } else {
      unsetenv("TZ");
    }
    tzset();
  }
  ScopedTz(const ScopedTz&) = delete;
  ScopedTz& operator=(const ScopedTz&) = delete;

 private:
  std::optional<std::string> old_;
};

}  // namespace hotsnap::testing

#endif  // HOTSNAP_TESTS_SCOPED_TZ_H_
