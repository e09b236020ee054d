"""The base layer: user errors and exit codes, result documents, atomic outputs, extension loading.

Its modules import only each other (``results`` -> ``errors`` -> ``outputs``), never another
package of ``harness``.
"""
