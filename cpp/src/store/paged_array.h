// A growable array whose growth and front trimming move a bounded amount: up to kPage elements
// it is one contiguous buffer grown by doubling; past that, a list of pages of kPage elements,
// so a push_back or a trim never copies more than one page (and touches at most one page of
// fresh memory), whatever its length. For the per-block aggregates of long histories
// (store/entity_history.h), which readers index directly.
#pragma once

#include <algorithm>
#include <cstddef>
#include <memory>
#include <vector>

namespace libfraud {

template <class T>
class PagedArray {
public:
    static constexpr size_t kPageShift = 12;
    static constexpr size_t kPage = size_t{1} << kPageShift;  // elements (32 KiB of doubles)

    size_t size() const { return size_; }
    bool empty() const { return size_ == 0; }
    const T& operator[](size_t i) const {
        const size_t p = front_ + i;
        return pages_.empty() ? small_[p] : pages_[p >> kPageShift][p & (kPage - 1)];
    }
    T& operator[](size_t i) { return const_cast<T&>(static_cast<const PagedArray&>(*this)[i]); }

    // Grows to n elements (n >= size()), the new ones set to fill.
    void grow(size_t n, const T& fill) {
        while (size_ < n) {
            const size_t p = front_ + size_;
            if (pages_.empty()) {
                if (p < kPage) {
                    if (p == small_.size()) small_.resize(std::min(kPage, std::max<size_t>(4, 2 * small_.size())));
                    small_[p] = fill;
                    ++size_;
                    continue;
                }
                to_pages();
            }
            if ((p >> kPageShift) == pages_.size()) pages_.push_back(std::unique_ptr<T[]>(new T[kPage]));
            pages_[p >> kPageShift][p & (kPage - 1)] = fill;
            ++size_;
        }
    }

    // Drops the first n elements (n <= size()).
    void erase_front(size_t n) {
        size_ -= n;
        front_ += n;
        if (pages_.empty()) {  // one buffer of at most kPage: slide down
            for (size_t i = 0; i < size_; ++i) small_[i] = small_[front_ + i];
            front_ = 0;
            return;
        }
        const size_t whole = front_ >> kPageShift;  // pages wholly behind the front
        if (whole > 0) {
            pages_.erase(pages_.begin(), pages_.begin() + static_cast<ptrdiff_t>(whole));
            front_ -= whole * kPage;
        }
    }

    size_t capacity_bytes() const { return (small_.capacity() + pages_.size() * kPage) * sizeof(T) + pages_.capacity() * sizeof(void*); }

private:
    void to_pages() {
        pages_.push_back(std::unique_ptr<T[]>(new T[kPage]));
        for (size_t i = 0; i < size_; ++i) pages_[0][front_ + i] = small_[front_ + i];
        std::vector<T>().swap(small_);
    }

    std::vector<T> small_;  // while no pages
    std::vector<std::unique_ptr<T[]>> pages_;
    size_t front_ = 0;  // trimmed elements at the front (of small_ or of the first page)
    size_t size_ = 0;
};

}  // namespace libfraud
