"""The EnergyPipeline API: group, version, names, and the labels and annotations the
operator puts on what it manages. One place, imported by the operator, the CRD
generator and the tests."""

from __future__ import annotations

GROUP = "energy-pipeline.github.io"
VERSION = "v1alpha1"
KIND = "EnergyPipeline"
PLURAL = "energypipelines"
SINGULAR = "energypipeline"
SHORT_NAMES = ["epl"]
API_VERSION = f"{GROUP}/{VERSION}"

FINALIZER = f"{GROUP}/finalizer"
# On Deployments: which pipeline's settings they read; on their pod template: the
# hash of those settings (a change rolls the pods).
PIPELINE_LABEL = f"{GROUP}/pipeline"
SETTINGS_HASH_ANNOTATION = f"{GROUP}/settings-hash"
MANAGED_BY_LABEL = "app.kubernetes.io/managed-by"
MANAGED_BY = "energy-operator"

STRIMZI_GROUP = "kafka.strimzi.io"
STRIMZI_VERSION = "v1beta2"
STRIMZI_CLUSTER_LABEL = "strimzi.io/cluster"


def settings_configmap_name(pipeline: str) -> str:
    return f"{pipeline}-settings"
