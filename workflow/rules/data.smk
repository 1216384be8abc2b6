# Data stage: source (synthetic twin | download | manual check) -> slice store -> patient split.
# Sources are shared by experiments: each is named by the digest of its settings record (medssl.jobs), so two
# experiments that agree share it and two that differ never rewrite each other's.
# On a cluster, one dataset's source, slicing and split run as one job, one after another (group data_<dataset>).


rule synthesize_dataset:
    output:
        directory(str(LAYOUT.synthetic("{dataset}", "{digest}"))),
    log:
        str(LAYOUT.source_log("synthesize", "{dataset}", "{digest}")),
    group:
        "data_{dataset}"
    conda:
        ENV
    threads: 1
    resources:
        mem_mb=2000,
        runtime=15,
    params:
        settings=shared_settings("synthesize"),
    shell:
        "medssl synthesize --settings {params.settings:q} --out {output:q} > {log:q} 2>&1"


rule fetch_dataset:
    output:
        str(LAYOUT.ready("{dataset}", "{digest}")),
    log:
        str(LAYOUT.source_log("fetch", "{dataset}", "{digest}")),
    group:
        "data_{dataset}"
    conda:
        ENV
    threads: 1
    resources:
        mem_mb=2000,
        runtime=240,
    params:
        settings=shared_settings("fetch"),
    shell:
        "medssl fetch --settings {params.settings:q} --out {output:q} > {log:q} 2>&1"


rule fetch_weights:
    output:
        str(weights_path(PLAN_CONFIG["resources"], VGG19)),
    log:
        str(LAYOUT.source_log("weights", "vgg19", VGG19.sha256)),
    conda:
        ENV
    threads: 1
    resources:
        mem_mb=1000,
        runtime=60,
    params:
        settings=record("weights", name="vgg19").to_json(),
    shell:
        "medssl weights --settings {params.settings:q} --out {output:q} > {log:q} 2>&1"


rule slice_dataset:
    input:
        source=source_of,
    output:
        directory(str(LAYOUT.store("{dataset}"))),
    log:
        str(LAYOUT.log("slice", "{dataset}")),
    benchmark:
        str(LAYOUT.benchmark("slice", "{dataset}"))
    group:
        "data_{dataset}"
    conda:
        ENV
    threads: 1
    resources:
        mem_mb=8000,
        runtime=60,
    params:
        settings=settings("slice"),
    shell:
        "medssl slice --settings {params.settings:q} --source {input.source:q} --out {output:q} > {log:q} 2>&1"


rule split_dataset:
    input:
        store=str(LAYOUT.store("{dataset}")),
    output:
        str(LAYOUT.split("{dataset}")),
    log:
        str(LAYOUT.log("split", "{dataset}")),
    group:
        "data_{dataset}"
    conda:
        ENV
    threads: 1
    resources:
        mem_mb=1000,
        runtime=10,
    params:
        settings=settings("split"),
    shell:
        "medssl split --settings {params.settings:q} --store {input.store:q} --out {output:q} > {log:q} 2>&1"
