# Data stage: source (synthetic twin | download | manual check) -> slice store -> patient split.


rule synthesize_dataset:
    output:
        directory(f"{RES}/synthetic/{{dataset}}"),
    params:
        config=CONFIG,
    log:
        f"{LOGS}/synthesize/{{dataset}}.log",
    threads: 1
    resources:
        mem_mb=2000,
        runtime=15,
    conda:
        ENV
    shell:
        "medssl synthesize --config {params.config} --dataset {wildcards.dataset} --out {output} > {log} 2>&1"


rule fetch_dataset:
    output:
        f"{RES}/ready/{{dataset}}.json",
    params:
        config=CONFIG,
    log:
        f"{LOGS}/fetch/{{dataset}}.log",
    threads: 1
    resources:
        mem_mb=2000,
        runtime=240,
    conda:
        ENV
    shell:
        "medssl fetch --config {params.config} --dataset {wildcards.dataset} --out {output} > {log} 2>&1"


rule slice_dataset:
    input:
        source_marker,
    output:
        directory(f"{OUT}/data/{{dataset}}"),
    params:
        config=CONFIG,
    log:
        f"{LOGS}/slice/{{dataset}}.log",
    benchmark:
        f"{BENCH}/slice/{{dataset}}.tsv"
    threads: 1
    resources:
        mem_mb=8000,
        runtime=60,
    conda:
        ENV
    shell:
        "medssl slice --config {params.config} --dataset {wildcards.dataset} --out {output} > {log} 2>&1"


rule split_dataset:
    input:
        store=f"{OUT}/data/{{dataset}}",
    output:
        f"{OUT}/splits/{{dataset}}.json",
    params:
        config=CONFIG,
    log:
        f"{LOGS}/split/{{dataset}}.log",
    threads: 1
    resources:
        mem_mb=1000,
        runtime=10,
    conda:
        ENV
    shell:
        "medssl split --config {params.config} --dataset {wildcards.dataset} --store {input.store} "
        "--out {output} > {log} 2>&1"
