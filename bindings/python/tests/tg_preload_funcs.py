# SPDX-License-Identifier: Apache-2.0
"""A --preload module for the tests: named Python functions."""
import taskgrid.worker


@taskgrid.worker.register("demo.shout")
def shout(number):
    return f"#{number}"


@taskgrid.worker.register("demo.double")
def double(x):
    return 2 * x


@taskgrid.worker.register("demo.pair")
def pair(a, b):
    return (a, b)  # JSON: comes back as a list


@taskgrid.worker.register("demo.obj")
def obj(x):
    return {1, 2, x}  # not JSON: pickled
