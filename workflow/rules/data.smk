# Data stage: source (synthetic twin | download | manual check) -> slice store -> patient split.


rule synthesize_dataset:
    output:
        directory(f"{RES}/synthetic/{{dataset}}"),
    log:
        f"{LOGS}/synthesize/{{dataset}}.log",
    conda:
        ENV
    threads: 1
    resources:
        mem_mb=2000,
        runtime=15,
    params:
        config=CONFIG,
        settings=settings_digest("synthesize"),
    shell:
        "medssl synthesize --config {params.config:q} --settings {params.settings:q} --dataset {wildcards.dataset:q} --out {output:q} > {log:q} 2>&1"


rule fetch_dataset:
    output:
        f"{RES}/ready/{{dataset}}.json",
    log:
        f"{LOGS}/fetch/{{dataset}}.log",
    conda:
        ENV
    threads: 1
    resources:
        mem_mb=2000,
        runtime=240,
    params:
        config=CONFIG,
        settings=settings_digest("fetch"),
    shell:
        "medssl fetch --config {params.config:q} --settings {params.settings:q} --dataset {wildcards.dataset:q} --out {output:q} > {log:q} 2>&1"


rule slice_dataset:
    input:
        source_marker,
    output:
        directory(f"{OUT}/data/{{dataset}}"),
    log:
        f"{LOGS}/slice/{{dataset}}.log",
    benchmark:
        f"{BENCH}/slice/{{dataset}}.tsv"
    conda:
        ENV
    threads: 1
    resources:
        mem_mb=8000,
        runtime=60,
    params:
        config=CONFIG,
        settings=settings_digest("slice"),
    shell:
        "medssl slice --config {params.config:q} --settings {params.settings:q} --dataset {wildcards.dataset:q} --out {output:q} > {log:q} 2>&1"


rule split_dataset:
    input:
        store=f"{OUT}/data/{{dataset}}",
    output:
        f"{OUT}/splits/{{dataset}}.json",
    log:
        f"{LOGS}/split/{{dataset}}.log",
    conda:
        ENV
    threads: 1
    resources:
        mem_mb=1000,
        runtime=10,
    params:
        config=CONFIG,
        settings=settings_digest("split"),
    shell:
        "medssl split --config {params.config:q} --settings {params.settings:q} --dataset {wildcards.dataset:q} --store {input.store:q} "
        "--out {output:q} > {log:q} 2>&1"
