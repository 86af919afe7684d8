"""Lightning DataModules: genome windows and packed sequences for language modelling, labelled
sequences for classification.

Every one follows one pattern that makes them deterministic and safe with workers and DDP:

* The **sampler** runs in the main process and decides everything random for an epoch -
  which windows or examples, in which order, on which strand - from ``seed`` and the epoch
  number alone. Each module has a *planner* that makes the epoch plan (small index tuples such
  as ``(contig_id, start, reverse)``, or whole batches of them), and one
  :class:`~genoseq.datamodules.sampling.PlanSampler` shards it by rank and resumes it.
* The **dataset** is stateless: it turns an index tuple into tensors by reading the genome.
  Genome objects carry no file handle when pickled; each worker process opens its own.

So the same seed gives the same batches with ``num_workers=0`` or ``num_workers=4``, each epoch
reshuffles (Lightning calls ``sampler.set_epoch``), and under DDP every rank takes an
interleaved, equal-sized share of the same epoch plan. The sampler subclasses
:class:`torch.utils.data.DistributedSampler` only so that Lightning does not wrap it in a
second distributed sampler: it shards itself, using the trainer's global rank and world size
(or ``torch.distributed`` when it is initialised outside Lightning).

Modules: ``sampling`` (the sampler, rank and resume position), ``regions`` (train /
validation regions, N counts), ``windows``, ``curriculum`` (windows in length buckets, mixed
short to long), ``labelled``, ``packed`` and ``in_order`` (a map-style dataset's items in index
order, for datasets that draw each item from its index) (one DataModule each).
"""

from .curriculum import CURRICULA, CurriculumWindowDataModule, CurriculumWindowDataset, bucket_weights
from .in_order import InOrderDataModule
from .labelled import LabelledSequenceDataModule, LabelledSequenceDataset, stratified_split
from .packed import PackedSequenceDataModule, pack_rows
from .regions import Region, count_n, split_regions
from .sampling import PlanSampler
from .windows import GenomeWindowDataModule, GenomeWindowDataset

__all__ = [
    "Region",
    "split_regions",
    "count_n",
    "PlanSampler",
    "GenomeWindowDataset",
    "GenomeWindowDataModule",
    "CURRICULA",
    "bucket_weights",
    "CurriculumWindowDataset",
    "CurriculumWindowDataModule",
    "LabelledSequenceDataset",
    "LabelledSequenceDataModule",
    "PackedSequenceDataModule",
    "InOrderDataModule",
    "pack_rows",
    "stratified_split",
]
