function follow() { return 1; }
