"""ProcessPoolExecutor: the standard library's own (betterconcurrent has no process pool).

Its futures are the standard library's Futures, not betterconcurrent's.
"""

import concurrent.futures.process as _std_process

# Every name of the standard module, private ones included (_check_system_limits, ...), so that
# code reaching into concurrent.futures.process finds them here.
globals().update({name: value for name, value in vars(_std_process).items()
                  if not (name.startswith('__') and name.endswith('__'))})
