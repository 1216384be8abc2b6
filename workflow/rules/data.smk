# Data stage: source (synthetic twin | download | manual check) -> slice store -> patient split.


rule synthesize_dataset:
    output:
        directory(str(LAYOUT.synthetic("{dataset}"))),
    log:
        str(LAYOUT.log("synthesize", "{dataset}")),
    conda:
        ENV
    threads: 1
    resources:
        mem_mb=2000,
        runtime=15,
    params:
        config=PLAN_FILE,
        settings=settings_digest("synthesize"),
    shell:
        "medssl synthesize --config {params.config:q} --settings {params.settings:q} --dataset {wildcards.dataset:q} --out {output:q} > {log:q} 2>&1"


rule fetch_dataset:
    output:
        str(LAYOUT.ready("{dataset}")),
    log:
        str(LAYOUT.log("fetch", "{dataset}")),
    conda:
        ENV
    threads: 1
    resources:
        mem_mb=2000,
        runtime=240,
    params:
        config=PLAN_FILE,
        settings=settings_digest("fetch"),
    shell:
        "medssl fetch --config {params.config:q} --settings {params.settings:q} --dataset {wildcards.dataset:q} --out {output:q} > {log:q} 2>&1"


rule slice_dataset:
    input:
        source_marker,
    output:
        directory(str(LAYOUT.store("{dataset}"))),
    log:
        str(LAYOUT.log("slice", "{dataset}")),
    benchmark:
        str(LAYOUT.benchmark("slice", "{dataset}"))
    conda:
        ENV
    threads: 1
    resources:
        mem_mb=8000,
        runtime=60,
    params:
        config=PLAN_FILE,
        settings=settings_digest("slice"),
    shell:
        "medssl slice --config {params.config:q} --settings {params.settings:q} --dataset {wildcards.dataset:q} --out {output:q} > {log:q} 2>&1"


rule split_dataset:
    input:
        store=str(LAYOUT.store("{dataset}")),
    output:
        str(LAYOUT.split("{dataset}")),
    log:
        str(LAYOUT.log("split", "{dataset}")),
    conda:
        ENV
    threads: 1
    resources:
        mem_mb=1000,
        runtime=10,
    params:
        config=PLAN_FILE,
        settings=settings_digest("split"),
    shell:
        "medssl split --config {params.config:q} --settings {params.settings:q} --dataset {wildcards.dataset:q} --store {input.store:q} "
        "--out {output:q} > {log:q} 2>&1"
