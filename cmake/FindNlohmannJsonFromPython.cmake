# nlohmann/json is header-only and private to the core. Take it from the system, or from the
# `nlohmann-json` PyPI package (a registry this project can always reach) via the build's Python.
find_path(NLOHMANN_JSON_INCLUDE_DIR nlohmann/json.hpp)
if(NOT NLOHMANN_JSON_INCLUDE_DIR)
  find_package(Python COMPONENTS Interpreter REQUIRED)
  execute_process(
    COMMAND ${Python_EXECUTABLE} -c "import nlohmann_json, os; print(os.path.join(os.path.dirname(nlohmann_json.__file__), 'include'))"
    OUTPUT_VARIABLE _nlohmann_dir OUTPUT_STRIP_TRAILING_WHITESPACE RESULT_VARIABLE _nlohmann_rc)
  if(_nlohmann_rc EQUAL 0 AND EXISTS "${_nlohmann_dir}/nlohmann/json.hpp")
    set(NLOHMANN_JSON_INCLUDE_DIR ${_nlohmann_dir} CACHE PATH "nlohmann/json headers" FORCE)
  else()
    message(FATAL_ERROR "nlohmann/json not found: `pip install nlohmann-json` (or apt-get install nlohmann-json3-dev)")
  endif()
endif()
message(STATUS "libfraud: nlohmann/json from ${NLOHMANN_JSON_INCLUDE_DIR}")
