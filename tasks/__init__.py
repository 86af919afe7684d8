"""genoseq's library layer: what a model does with sequences held in memory.

Functions and small classes here take sequences, variants, reads or a genome object
(:mod:`genoseq.genome`) and return arrays, dataclasses or tables. They read and write no files
in user formats and know nothing of the command line or HTTP: the jobs in
:mod:`genoseq.pipelines` read files, call this layer and write files; the routes in
:mod:`genoseq.api` validate a request, call this layer and answer JSON. Bad options raise
:class:`genoseq.InputError` here, once.

Import direction: ``genoseq`` <- ``kernels`` <- ``models`` <- ``tasks`` <- ``pipelines`` <- ``api``.
"""
