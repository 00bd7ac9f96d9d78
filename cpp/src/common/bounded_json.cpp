#include "common/bounded_json.h"

#include <cstdint>
#include <exception>
#include <vector>

namespace libfraud {
namespace {

using nlohmann::json;

// nlohmann's SAX interface, building the document on a stack of open containers (each element is
// added once: linear) and keeping the path for messages.
class BoundedBuilder {
public:
    BoundedBuilder(int max_depth, json& root, JsonParseError& error) : max_depth_(max_depth), root_(root), error_(error) {}

    bool null() { return add(json(nullptr)); }
    bool boolean(bool v) { return add(json(v)); }
    bool number_integer(json::number_integer_t v) { return add(json(v)); }
    bool number_unsigned(json::number_unsigned_t v) { return add(json(v)); }
    bool number_float(json::number_float_t v, const json::string_t&) { return add(json(v)); }
    bool string(json::string_t& v) { return add(json(std::move(v))); }
    bool binary(json::binary_t& v) { return add(json::binary(std::move(v))); }
    bool start_object(std::size_t) { return open(json::object(), false); }
    bool start_array(std::size_t) { return open(json::array(), true); }
    bool key(json::string_t& k) {
        frames_.back().key = std::move(k);
        return true;
    }
    bool end_object() { return close(); }
    bool end_array() { return close(); }
    template <typename Exception>
    bool parse_error(std::size_t, const std::string&, const Exception& e) {
        // Syntax errors and numbers beyond a double (1e400), reported where they happened.
        return fail(e.what());
    }

private:
    struct Frame {
        json* container;
        bool array;
        std::string key;
    };

    std::string path() const {
        std::string out;
        for (size_t i = 0; i < frames_.size(); ++i) {
            const Frame& f = frames_[i];
            // An outer list's element being parsed is its last; the innermost one's is its next.
            const size_t n = f.container->size();
            if (f.array) out += "[" + std::to_string(i + 1 == frames_.size() || n == 0 ? n : n - 1) + "]";
            else if (!f.key.empty()) out += (out.empty() ? "" : ".") + f.key;
        }
        return out;
    }
    bool fail(const std::string& what) {
        error_.what = what;
        error_.path = path();
        return false;
    }
    // Places a value where the parser is: the root, the next array element or the current key.
    json* place(json&& v) {
        if (frames_.empty()) {
            root_ = std::move(v);
            return &root_;
        }
        Frame& f = frames_.back();
        if (f.array) {
            f.container->push_back(std::move(v));
            return &f.container->back();
        }
        json& slot = (*f.container)[f.key];  // a repeated key: the last one wins, as json::parse does
        slot = std::move(v);
        return &slot;
    }
    bool add(json&& v) {
        place(std::move(v));
        return true;
    }
    bool open(json&& container, bool array) {
        if (static_cast<int>(frames_.size()) >= max_depth_)
            return fail("nested more than " + std::to_string(max_depth_) + " levels deep");
        json* c = place(std::move(container));
        frames_.push_back({c, array, std::string()});
        return true;
    }
    bool close() {
        frames_.pop_back();
        return true;
    }

    int max_depth_;
    json& root_;
    JsonParseError& error_;
    std::vector<Frame> frames_;
};

}  // namespace

bool parse_bounded_json(const std::string& text, int max_depth, nlohmann::json& out, JsonParseError& error) {
    out = json();
    BoundedBuilder builder(max_depth, out, error);
    try {
        if (json::sax_parse(text, &builder)) return true;
    } catch (const std::exception& e) {  // allocation failures and the like: still an answer
        error.what = e.what();
    }
    out = json();  // a partial document is never used; destroying it is iterative in nlohmann
    if (error.what.empty()) error.what = "not valid JSON";
    return false;
}

}  // namespace libfraud
