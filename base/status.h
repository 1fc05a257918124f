// Status and Result<T>: recoverable errors as values.
//
// Every function below the CLI reports failure by returning a Status (or a Result<T>
// holding one). The code says which class of failure it is, and so which documented
// exit code the CLI returns; the message says what failed, naming the device, offset
// or field. Exceptions are used only at the CLI edge.
#ifndef HOTSNAP_BASE_STATUS_H_
#define HOTSNAP_BASE_STATUS_H_

#include <cassert>
#include <optional>
#include <string>
#include <utility>

namespace hotsnap {

// Classes of failure. Each maps to one exit code (see cli/exit_codes.h and the README).
enum class Code {
  kOk = 0,
  kUsage,        // bad arguments or options
  kSource,       // the source cannot be opened, read, or is unsafe to read
  kTarget,       // the destination/target cannot be written, or is unsafe to write
  kIntegrity,    // an image is corrupt, truncated, or does not match its hashes
  kInterrupted,  // SIGINT/SIGTERM arrived; everything was cleaned up
  kUnsupported,  // the request is valid but this build/kernel cannot do it
  kBusy,         // another hotsnap run holds the source or target (see snapshot/source_lock.h)
  kInternal,     // a bug or an unexpected system failure
};

const char* CodeName(Code code);

// [[nodiscard]]: a Status (or Result) dropped on the floor is a lost error; the compiler
// warns wherever one is ignored. Where ignoring is right, the call site says why.
class [[nodiscard]] Status {
 public:
  Status() = default;  // OK
  Status(Code code, std::string message, int err = 0)
      : code_(code), message_(std::move(message)), errno_(err) {}

  static Status Ok() { return Status(); }
  // Builds "context: strerror(err)" with the errno kept for callers.
  static Status FromErrno(Code code, int err, const std::string& context);

  bool ok() const { return code_ == Code::kOk; }
  Code code() const { return code_; }
  int err() const { return errno_; }
  const std::string& message() const { return message_; }

  // Prepends context: "opening image: <old message>".
  Status Wrap(const std::string& context) const;
  // The first error of a failed step and of the cleanup after it: this Status if it is an
  // error (with "; while cleaning up: <cleanup message>" appended if the cleanup failed too),
  // else `cleanup`. For error paths that undo what was done and must not lose either error.
  Status WithCleanup(const Status& cleanup) const;

 private:
  Code code_ = Code::kOk;
  std::string message_;
  int errno_ = 0;
};

// A value or the Status explaining why there is none.
template <typename T>
class [[nodiscard]] Result {
 public:
  Result(T value) : value_(std::move(value)) {}  // NOLINT: implicit by design
  Result(Status status) : status_(std::move(status)) {  // NOLINT: implicit by design
    assert(!status_.ok());
  }

  bool ok() const { return value_.has_value(); }
  const Status& status() const { return status_; }
  T& value() & { return *value_; }
  const T& value() const& { return *value_; }
  T&& value() && { return std::move(*value_); }
  T* operator->() { return &*value_; }
  const T* operator->() const { return &*value_; }
  T& operator*() & { return *value_; }

 private:
  std::optional<T> value_;
  Status status_;
};

}  // namespace hotsnap

// Returns early from the enclosing function when `expr` yields a non-OK Status.
#define HOTSNAP_RETURN_IF_ERROR(expr)              \
  do {                                             \
    ::hotsnap::Status hotsnap_status_ = (expr);    \
    if (!hotsnap_status_.ok()) return hotsnap_status_; \
  } while (0)

#endif  // HOTSNAP_BASE_STATUS_H_
