/* ref_python.h — running the float64 Python references (tests/ref_*.py, numpy) from C tests.
 * Include after check.h. A missing numpy is a failure, not a skip: deploy/install-deps.sh
 * installs python3-numpy for the system interpreter. */
#ifndef DT_REF_PYTHON_H
#define DT_REF_PYTHON_H

#include <stdio.h>
#include <stdlib.h>

/* The interpreter that runs the references: DIFFTUNE_PYTHON (set by ctest), else /usr/bin/python3. */
static inline const char *ref_python(void) {
    const char *py = getenv("DIFFTUNE_PYTHON");
    return py && py[0] ? py : "/usr/bin/python3";
}

/* Fails loudly (one CHECK) when the interpreter cannot import numpy; returns 1 when usable. */
static inline int ref_python_ready(void) {
    char cmd[1200];
    snprintf(cmd, sizeof cmd, "'%s' -c 'import numpy' 2>&1", ref_python());
    int rc = system(cmd);
    CHECK(rc == 0, "'%s' cannot import numpy (status %d): install python3-numpy "
          "(deploy/install-deps.sh) or point DIFFTUNE_PYTHON at an interpreter that has it",
          ref_python(), rc);
    return rc == 0;
}

#endif
