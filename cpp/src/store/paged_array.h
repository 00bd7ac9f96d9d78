// A growable array whose growth and front trimming move a bounded amount: up to kPage elements
// it is a plain std::vector (grown and trimmed as one, so a short array costs what a vector
// does); past that, a list of pages of kPage elements, so a grow or a trim never copies more
// than one page (nor touches more than one page of fresh memory), whatever its length. For the
// per-block aggregates of long histories (store/entity_history.h), which readers index directly.
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

    size_t size() const { return paged_ ? paged_->size : small_.size(); }
    bool empty() const { return size() == 0; }
    const T& operator[](size_t i) const {
        if (!paged_) return small_[i];
        const size_t p = paged_->front + i;
        return paged_->pages[p >> kPageShift][p & (kPage - 1)];
    }
    T& operator[](size_t i) { return const_cast<T&>(static_cast<const PagedArray&>(*this)[i]); }

    // Grows to n elements (n >= size()), the new ones set to fill.
    void grow(size_t n, const T& fill) {
        if (!paged_) {
            if (n <= kPage) {
                small_.resize(n, fill);
                return;
            }
            to_pages();
        }
        Paged& g = *paged_;
        for (; g.size < n; ++g.size) {
            const size_t p = g.front + g.size;
            if ((p >> kPageShift) == g.pages.size()) g.pages.push_back(std::unique_ptr<T[]>(new T[kPage]));
            g.pages[p >> kPageShift][p & (kPage - 1)] = fill;
        }
    }

    // Drops the first n elements (n <= size()).
    void erase_front(size_t n) {
        if (!paged_) {  // at most kPage elements
            small_.erase(small_.begin(), small_.begin() + static_cast<ptrdiff_t>(n));
            return;
        }
        Paged& g = *paged_;
        g.size -= n;
        g.front += n;
        const size_t whole = g.front >> kPageShift;  // pages wholly behind the front
        if (whole > 0) {
            g.pages.erase(g.pages.begin(), g.pages.begin() + static_cast<ptrdiff_t>(whole));
            g.front -= whole * kPage;
        }
    }

    size_t capacity_bytes() const {
        if (!paged_) return small_.capacity() * sizeof(T);
        return sizeof(Paged) + paged_->pages.size() * kPage * sizeof(T) + paged_->pages.capacity() * sizeof(void*);
    }

private:
    struct Paged {
        std::vector<std::unique_ptr<T[]>> pages;
        size_t front = 0;  // trimmed elements at the front of the first page
        size_t size = 0;
    };

    void to_pages() {
        auto g = std::make_unique<Paged>();
        g->pages.push_back(std::unique_ptr<T[]>(new T[kPage]));
        std::copy(small_.begin(), small_.end(), g->pages[0].get());
        g->size = small_.size();
        std::vector<T>().swap(small_);
        paged_ = std::move(g);
    }

    std::vector<T> small_;  // while short (paged_ null)
    std::unique_ptr<Paged> paged_;
};

}  // namespace libfraud
