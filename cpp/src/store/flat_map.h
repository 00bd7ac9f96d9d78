// Open-addressing hash tables keyed by int64_t, for the temporal store's entity index and its
// duplicate-id set: slot arrays (no node per element), linear probing, erase by backward shift (no
// tombstones, so probes stay short after eviction), load at most 4/5.
//
// Growth is bounded per insert: the table is a directory of segments (extendible hashing on the
// hash's low bits), each its own power-of-two linear-probing table of at most kMaxSegmentSlots
// slots. A segment below that size doubles; one at it splits into two by the next hash bit. So
// one insert moves at most kMaxSegmentSlots * 4/5 elements (about 100 us), whatever the table's
// size, and a small table is one small segment. Slots move on insert and erase: pointers into the
// table are valid only until the next insert or erase. Not thread-safe for writers; const members
// may run concurrently.
#pragma once

#include <cstddef>
#include <cstdint>
#include <limits>
#include <memory>
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
// and movable. The key kFlatEmptyKey itself is kept in a slot of its own beside the segments.
template <class Slot>
class FlatTable {
public:
    static constexpr size_t kMinSegmentSlots = 16;
    static constexpr size_t kMaxSegmentSlots = 8192;
    // Past this many directory bits (a 4 MiB directory; 10M keys need about 11) a full segment
    // doubles instead of splitting: keys crafted to share their hash's low bits cannot blow the
    // directory up, they only lose the bound on one insert's work.
    static constexpr uint32_t kMaxDepth = 20;

    size_t size() const { return size_ + (has_empty_key_ ? 1 : 0); }
    size_t capacity() const { return slots_total_; }
    size_t slot_bytes() const { return slots_total_ * sizeof(Slot) + dir_.capacity() * sizeof(uint32_t) + segs_.capacity() * sizeof(Segment); }

    const Slot* find(int64_t key) const {
        if (key == kFlatEmptyKey) return has_empty_key_ ? &empty_key_slot_ : nullptr;
        if (segs_.empty()) return nullptr;
        const uint64_t h = hash(key);
        const Segment& s = segs_[dir_[h & dir_mask_]];
        for (size_t i = s.home(h);; i = (i + 1) & s.mask) {
            if (s.slots[i].key == key) return &s.slots[i];
            if (s.slots[i].key == kFlatEmptyKey) return nullptr;
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
        if (segs_.empty()) init(kMinSegmentSlots);
        const uint64_t h = hash(key);
        Segment* s = &segs_[dir_[h & dir_mask_]];
        size_t i = s->home(h);
        for (; s->slots[i].key != kFlatEmptyKey; i = (i + 1) & s->mask) {
            if (s->slots[i].key == key) return {&s->slots[i], false};
        }
        if (5 * (s->size + 1) > 4 * (s->mask + 1)) {  // full: grow or split it (at most once per insert)
            grow(dir_[h & dir_mask_]);
            s = &segs_[dir_[h & dir_mask_]];
            for (i = s->home(h); s->slots[i].key != kFlatEmptyKey; i = (i + 1) & s->mask) {
            }
        }
        s->slots[i].key = key;
        ++s->size;
        ++size_;
        return {&s->slots[i], true};
    }

    bool erase(int64_t key) {
        if (key == kFlatEmptyKey) {
            const bool had = has_empty_key_;
            has_empty_key_ = false;
            empty_key_slot_ = Slot{};
            return had;
        }
        if (segs_.empty()) return false;
        const uint64_t h = hash(key);
        Segment& s = segs_[dir_[h & dir_mask_]];
        size_t hole = s.home(h);
        for (;; hole = (hole + 1) & s.mask) {
            if (s.slots[hole].key == key) break;
            if (s.slots[hole].key == kFlatEmptyKey) return false;
        }
        // Backward shift: pull later slots of the probe run into the hole when their home allows.
        for (size_t j = (hole + 1) & s.mask; s.slots[j].key != kFlatEmptyKey; j = (j + 1) & s.mask) {
            const size_t home = s.home(hash(s.slots[j].key));
            // Movable iff its home is not cyclically within (hole, j].
            if (((j - home) & s.mask) >= ((j - hole) & s.mask)) {
                s.slots[hole] = std::move(s.slots[j]);
                hole = j;
            }
        }
        s.slots[hole] = Slot{};
        --s.size;
        --size_;
        return true;
    }

    // Room for n keys: a table that fits one segment gets it at once (no growth until n); a larger
    // one is split up front into segments of full size, so growth starts only near n. A hint for
    // a table still in one segment; later ones do nothing (growth is bounded per insert anyway,
    // and splitting many segments at once would be the stall the segments avoid).
    void reserve(size_t n) {
        if (segs_.size() > 1) return;
        if (segs_.empty()) init(kMinSegmentSlots);
        if (segs_.size() == 1 && 5 * n <= 4 * kMaxSegmentSlots) {
            size_t cap = segs_[0].mask + 1;
            while (5 * n > 4 * cap) cap *= 2;
            if (cap != segs_[0].mask + 1) rebuild(0, cap);
            return;
        }
        // Enough segments that n keys leave each at 2/3 load on average (room for the spread).
        size_t want = 1;
        while (3 * n > 2 * want * kMaxSegmentSlots && want < (size_t{1} << kMaxDepth)) want *= 2;
        for (size_t k = 0; k < segs_.size(); ++k)
            if (segs_[k].mask + 1 < kMaxSegmentSlots) rebuild(k, kMaxSegmentSlots);
        while (dir_.size() < want || segs_.size() < want) {
            bool split_any = false;
            for (size_t k = 0, end = segs_.size(); k < end; ++k) {
                if ((size_t{1} << segs_[k].depth) < want) {
                    split(k);
                    split_any = true;
                }
            }
            if (!split_any) break;
        }
    }

    // fn(Slot&) (or const Slot&) for each element, segment by segment in slot order.
    template <class Fn>
    void for_each(Fn&& fn) {
        for (Segment& s : segs_)
            for (size_t i = 0; i <= s.mask; ++i)
                if (s.slots[i].key != kFlatEmptyKey) fn(s.slots[i]);
        if (has_empty_key_) fn(empty_key_slot_);
    }
    template <class Fn>
    void for_each(Fn&& fn) const {
        for (const Segment& s : segs_)
            for (size_t i = 0; i <= s.mask; ++i)
                if (s.slots[i].key != kFlatEmptyKey) fn(s.slots[i]);
        if (has_empty_key_) fn(empty_key_slot_);
    }

private:
    struct Segment {
        std::unique_ptr<Slot[]> slots;
        size_t mask = 0;  // slots - 1
        size_t size = 0;
        uint32_t depth = 0;  // hash bits [0, depth) select it in the directory: they equal `bits`
        size_t bits = 0;
        // The slot index uses the hash's high half, the directory its low bits: independent.
        size_t home(uint64_t h) const { return static_cast<size_t>(h >> 32) & mask; }
    };

public:
    // MurmurHash3's finaliser: sequential ids spread over the whole table. Its low bits pick the
    // segment: keys batched by them touch few segments at a time.
    static uint64_t hash(int64_t key) {
        uint64_t x = static_cast<uint64_t>(key);
        x ^= x >> 33;
        x *= 0xff51afd7ed558ccdULL;
        x ^= x >> 33;
        x *= 0xc4ceb9fe1a85ec53ULL;
        x ^= x >> 33;
        return x;
    }

private:

    static Segment make_segment(size_t cap, uint32_t depth, size_t bits) {
        Segment s;
        s.bits = bits;
        s.slots = std::make_unique<Slot[]>(cap);
        s.mask = cap - 1;
        s.depth = depth;
        return s;
    }
    static void insert_moved(Segment& s, Slot& x, uint64_t h) {
        size_t i = s.home(h);
        while (s.slots[i].key != kFlatEmptyKey) i = (i + 1) & s.mask;
        s.slots[i] = std::move(x);
        ++s.size;
    }

    void init(size_t cap) {
        segs_.push_back(make_segment(cap, 0, 0));
        dir_.assign(1, 0);
        dir_mask_ = 0;
        slots_total_ = cap;
    }

    void grow(uint32_t k) {
        if (segs_[k].mask + 1 < kMaxSegmentSlots || segs_[k].depth >= kMaxDepth) rebuild(k, 2 * (segs_[k].mask + 1));
        else split(k);
    }

    // Segment k rehashed into cap slots.
    void rebuild(size_t k, size_t cap) {
        Segment n = make_segment(cap, segs_[k].depth, segs_[k].bits);
        Segment& old = segs_[k];
        for (size_t i = 0; i <= old.mask; ++i)
            if (old.slots[i].key != kFlatEmptyKey) insert_moved(n, old.slots[i], hash(old.slots[i].key));
        slots_total_ += cap - (old.mask + 1);
        old = std::move(n);
    }

    // Segment k (full size) into two by hash bit `depth`; the directory doubles first if needed
    // (a copy of dir_.size() indices, a few thousand at 10M keys).
    void split(size_t k) {
        const uint32_t d = segs_[k].depth;
        if ((size_t{1} << d) == dir_.size()) {
            const size_t n = dir_.size();
            dir_.resize(2 * n);
            for (size_t j = 0; j < n; ++j) dir_[n + j] = dir_[j];
            dir_mask_ = 2 * n - 1;
        }
        const size_t cap = segs_[k].mask + 1;
        Segment lo = make_segment(cap, d + 1, 0), hi = make_segment(cap, d + 1, 0);
        {
            Segment& old = segs_[k];
            for (size_t i = 0; i <= old.mask; ++i) {
                if (old.slots[i].key == kFlatEmptyKey) continue;
                const uint64_t h = hash(old.slots[i].key);
                insert_moved((h >> d) & 1 ? hi : lo, old.slots[i], h);
            }
        }
        const size_t low_bits = segs_[k].bits;
        hi.bits = low_bits | (size_t{1} << d);
        lo.bits = low_bits;
        segs_[k] = std::move(lo);
        segs_.push_back(std::move(hi));
        const uint32_t hi_index = static_cast<uint32_t>(segs_.size() - 1);
        // Every directory entry whose low d bits select k: those with bit d set go to the new one.
        for (size_t j = low_bits | (size_t{1} << d); j < dir_.size(); j += size_t{1} << (d + 1)) dir_[j] = hi_index;
        slots_total_ += cap;
    }

    std::vector<Segment> segs_;  // empty until the first insert
    std::vector<uint32_t> dir_;  // hash & dir_mask_ -> segment index
    size_t dir_mask_ = 0;
    size_t size_ = 0;  // in segments
    size_t slots_total_ = 0;
    bool has_empty_key_ = false;
    Slot empty_key_slot_{};
};

template <class V>
using FlatMap = FlatTable<FlatKeyValue<V>>;
using FlatSet = FlatTable<FlatKey>;

}  // namespace libfraud
