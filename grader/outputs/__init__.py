"""Everything hw4grade writes, one module per product (DESIGN section 7).

* ``results_json`` -- ``OUT/<student>/results.json`` (Gradescope format) and its schema check
* ``feedback``     -- ``OUT/<student>/feedback.md``
* ``gradebook``    -- ``OUT/gradebook.csv`` and the table ``hw4grade grade`` prints
* ``manual``       -- ``OUT/manual.csv`` and ``hw4grade merge``
* ``summary``      -- ``OUT/summary.html``
* ``selfcheck``    -- the report of ``hw4grade check``
* ``ci``           -- GitHub Actions job summary and annotations (``hw4grade ci``)
* ``gradescope``   -- the Gradescope autograder bundle and its ``run_autograder`` step
* ``atomic``       -- atomic file writes (a crash never leaves half a file)

All of them are pure functions of graded results (``grader.results.SubmissionResult``) and the
config; where the files go and when they are (re)written is ``grader.batch``'s business.
"""
