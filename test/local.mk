# test/: the lab's workload and shared test files
