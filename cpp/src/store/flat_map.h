// Open-addressing hash tables keyed by int64_t, for the temporal store's entity index and its
// duplicate-id set: one array of slots (no node per element), linear probing, power-of-two
// capacity, load at most 4/5, erase by backward shift (no tombstones, so probes stay short after
// eviction). Slots move on insert (rehash) and erase: pointers into the table are valid only until
// the next insert or erase. Not thread-safe for writers; const members may run concurrently.
#pragma once

#include <cstddef>
#include <cstdint>
#include <limits>
#include <utility>
#include <vector>

namespace libfraud {

inline constexpr int64_t kFlatEmptyKey = std::numeric_limits<int64_t>::min();

struct FlatKey {
    int64_t key = kFlatEmptyKey;
};

template <class V>
struct FlatKeyValue {
    int64_t key = kFlatEmptyKey;
    V value{};
};

// Slot: a struct whose first member is `int64_t key` (kFlatEmptyKey = free), default-constructible
// and movable. The key kFlatEmptyKey itself is kept in a slot of its own beside the array.
template <class Slot>
class FlatTable {
public:
    size_t size() const { return size_ + (has_empty_key_ ? 1 : 0); }
    size_t capacity() const { return slots_.size(); }
    size_t slot_bytes() const { return slots_.capacity() * sizeof(Slot); }

    const Slot* find(int64_t key) const {
        if (key == kFlatEmptyKey) return has_empty_key_ ? &empty_key_slot_ : nullptr;
        if (slots_.empty()) return nullptr;
        for (size_t i = home(key);; i = (i + 1) & mask_) {
            if (slots_[i].key == key) return &slots_[i];
            if (slots_[i].key == kFlatEmptyKey) return nullptr;
        }
    }
    Slot* find(int64_t key) { return const_cast<Slot*>(static_cast<const FlatTable*>(this)->find(key)); }
    bool contains(int64_t key) const { return find(key) != nullptr; }

    // The key's slot, default-initialised (but for the key) when it was absent; true if inserted.
    std::pair<Slot*, bool> try_emplace(int64_t key) {
        if (key == kFlatEmptyKey) {
            const bool inserted = !has_empty_key_;
            has_empty_key_ = true;
            return {&empty_key_slot_, inserted};
        }
        if (5 * (size_ + 1) > 4 * slots_.size()) rehash(slots_.empty() ? 16 : 2 * slots_.size());
        size_t i = home(key);
        for (; slots_[i].key != kFlatEmptyKey; i = (i + 1) & mask_) {
            if (slots_[i].key == key) return {&slots_[i], false};
        }
        slots_[i].key = key;
        ++size_;
        return {&slots_[i], true};
    }

    bool erase(int64_t key) {
        if (key == kFlatEmptyKey) {
            const bool had = has_empty_key_;
            has_empty_key_ = false;
            empty_key_slot_ = Slot{};
            return had;
        }
        Slot* s = find(key);
        if (!s) return false;
        // Backward shift: pull later slots of the probe run into the hole when their home allows.
        size_t hole = static_cast<size_t>(s - slots_.data());
        for (size_t j = (hole + 1) & mask_; slots_[j].key != kFlatEmptyKey; j = (j + 1) & mask_) {
            const size_t h = home(slots_[j].key);
            // Movable iff its home is not cyclically within (hole, j].
            if (((j - h) & mask_) >= ((j - hole) & mask_)) {
                slots_[hole] = std::move(slots_[j]);
                hole = j;
            }
        }
        slots_[hole] = Slot{};
        --size_;
        return true;
    }

    // Room for n keys without a rehash (never shrinks).
    void reserve(size_t n) {
        size_t cap = slots_.empty() ? 16 : slots_.size();
        while (5 * n > 4 * cap) cap *= 2;
        if (cap != slots_.size()) rehash(cap);
    }

    // fn(Slot&) (or const Slot&) for each element, in slot order.
    template <class Fn>
    void for_each(Fn&& fn) {
        for (Slot& s : slots_) {
            if (s.key != kFlatEmptyKey) fn(s);
        }
        if (has_empty_key_) fn(empty_key_slot_);
    }
    template <class Fn>
    void for_each(Fn&& fn) const {
        for (const Slot& s : slots_) {
            if (s.key != kFlatEmptyKey) fn(s);
        }
        if (has_empty_key_) fn(empty_key_slot_);
    }

private:
    // MurmurHash3's finaliser: sequential ids spread over the whole table.
    size_t home(int64_t key) const {
        uint64_t x = static_cast<uint64_t>(key);
        x ^= x >> 33;
        x *= 0xff51afd7ed558ccdULL;
        x ^= x >> 33;
        x *= 0xc4ceb9fe1a85ec53ULL;
        x ^= x >> 33;
        return static_cast<size_t>(x) & mask_;
    }

    void rehash(size_t cap) {
        std::vector<Slot> old(cap);
        old.swap(slots_);
        mask_ = cap - 1;
        for (Slot& s : old) {
            if (s.key == kFlatEmptyKey) continue;
            size_t i = home(s.key);
            while (slots_[i].key != kFlatEmptyKey) i = (i + 1) & mask_;
            slots_[i] = std::move(s);
        }
    }

    std::vector<Slot> slots_;  // empty, or a power of two of them
    size_t mask_ = 0;
    size_t size_ = 0;  // in slots_
    bool has_empty_key_ = false;
    Slot empty_key_slot_{};
};

template <class V>
using FlatMap = FlatTable<FlatKeyValue<V>>;
using FlatSet = FlatTable<FlatKey>;

}  // namespace libfraud
