"""The course's checks, one module per thing checked, all run by `c1p1.checks.core.run_cases`.

`c1p1.catalog` names every check once; `C1P1_tests` gathers the catalogued checks for learners.
"""
