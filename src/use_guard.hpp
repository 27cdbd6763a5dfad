// Sharing a changing object between Python threads fails with RuntimeError instead of racing.
//
// The kernels release the GIL, so another Python thread can call into an object while a kernel
// works on it. Reading an object from several threads at once is fine (Policy.forward is const);
// changing one that another thread is reading or changing is not: EpisodeBuffer.append or
// FrameDifferencer.step reallocate vectors a GIL-released kernel may be reading, which corrupts
// memory, and a weight update under a forward pass gives a result of neither weights.
//
// So a call that releases the GIL registers the objects it reads or writes for as long as it
// runs (UseScope), and a call that would change an object in use, or read one being changed,
// raises. Registering and checking happen with the GIL held, which is the registry's lock. The
// registry is empty unless a GIL-released call is running, so a check costs one branch on the
// usual, single-threaded path.
#pragma once
#include <algorithm>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

namespace fastpong::bind {

struct ObjectInUse {
  const void* object;
  int readers;
  int writers;
};

// Touched only with the GIL held. An inline function's static is one object in the whole module.
inline std::vector<ObjectInUse>& objects_in_use() {
  static std::vector<ObjectInUse> objects;
  return objects;
}

inline ObjectInUse* find_in_use(const void* object) {
  auto& objects = objects_in_use();
  const auto it = std::find_if(objects.begin(), objects.end(),
                               [object](const ObjectInUse& u) { return u.object == object; });
  return it == objects.end() ? nullptr : &*it;
}

[[noreturn]] inline void fail_in_use(const char* what, bool being_changed) {
  throw std::runtime_error(
      std::string(what) + " is being " + (being_changed ? "changed" : "used") +
      " by another thread. A fastpong object that changes (EpisodeBuffer, EpisodeBatch, "
      "FrameDifferencer, GradientBuffer, a Policy being updated) must not be used from two "
      "threads at once: give each thread its own, or hold a lock (README: Threads)");
}

// For a call that changes `object`: no other thread may be reading or changing it.
inline void require_not_in_use(const void* object, const char* what) {
  if (objects_in_use().empty()) return;
  if (const ObjectInUse* u = find_in_use(object)) fail_in_use(what, u->writers > 0);
}

// For a call that reads `object`: no other thread may be changing it.
inline void require_not_changing(const void* object, const char* what) {
  if (objects_in_use().empty()) return;
  const ObjectInUse* u = find_in_use(object);
  if (u != nullptr && u->writers > 0) fail_in_use(what, true);
}

enum class Use { kRead, kWrite };

// Registers `object` as read or written for the scope. Construct it before releasing the GIL and
// let it end after the GIL is back (declare it before the py::gil_scoped_release).
class UseScope {
 public:
  UseScope(const void* object, const char* what, Use use) : object_(object), use_(use) {
    if (use == Use::kWrite) {
      require_not_in_use(object, what);
    } else {
      require_not_changing(object, what);
    }
    ObjectInUse* u = find_in_use(object);
    if (u == nullptr) {
      objects_in_use().push_back({object, 0, 0});
      u = &objects_in_use().back();
    }
    (use == Use::kWrite ? u->writers : u->readers) += 1;
  }
  ~UseScope() {
    ObjectInUse* u = find_in_use(object_);
    (use_ == Use::kWrite ? u->writers : u->readers) -= 1;
    if (u->readers == 0 && u->writers == 0) {
      auto& objects = objects_in_use();
      *u = objects.back();
      objects.pop_back();
    }
  }
  UseScope(const UseScope&) = delete;
  UseScope& operator=(const UseScope&) = delete;

 private:
  const void* object_;
  Use use_;
};

// Several objects registered for one call, such as the arrays of a layered model, which are keyed
// by their data: the same storage registered through a NumPy view and through the object that owns
// it is one entry. An object listed twice is registered once (as written if either use writes).
class UseScopes {
 public:
  void add(const void* object, const char* what, Use use) {
    for (auto& entry : pending_) {
      if (entry.object == object) {
        if (use == Use::kWrite) entry.use = Use::kWrite;
        return;
      }
    }
    pending_.push_back({object, what, use});
  }
  // Registers everything added; call it once, with the GIL held, before releasing it.
  void enter() {
    for (const auto& entry : pending_) {
      scopes_.push_back(std::make_unique<UseScope>(entry.object, entry.what, entry.use));
    }
  }

 private:
  struct Pending {
    const void* object;
    const char* what;
    Use use;
  };
  std::vector<Pending> pending_;
  std::vector<std::unique_ptr<UseScope>> scopes_;
};

}  // namespace fastpong::bind
