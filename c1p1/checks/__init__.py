"""The course's checks, one module per notebook; `C1P1_tests` gathers them for learners."""
