# Extra benchmark targets (included by bench/CMakeLists.txt).
# pg_bench: the PostgreSQL store and queue next to raw libpq; it needs the
# store (not only the library), hence not a bench_*.c. Run by
# bench/postgres.bench.sh against a private cluster.
add_executable(pg_bench ${CMAKE_CURRENT_SOURCE_DIR}/pg_bench.c)
target_link_libraries(pg_bench PRIVATE rf_store racefree_static PkgConfig::LIBPQ Threads::Threads)
