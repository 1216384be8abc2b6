# Training stage: pretrain (once per run and pool) -> finetune (per dataset, label ratio, seed) -> evaluate.
# Training rules declare a GPU; locally they run on whatever device is there (config `device: auto`).


rule pretrain:
    input:
        unpack(pretrain_inputs),
    output:
        model=f"{OUT}/{{study}}/pretrain/{{run}}/{{pool}}/model.pt",
    params:
        config=CONFIG,
        out=lambda wildcards, output: os.path.dirname(output.model),
    log:
        f"{LOGS}/pretrain/{{study}}/{{run}}/{{pool}}.log",
    benchmark:
        f"{BENCH}/pretrain/{{study}}/{{run}}/{{pool}}.tsv"
    threads: config.get("threads", 2)
    resources:
        mem_mb=16000,
        runtime=stage_resources("pretrain"),
        gpu=1,
    conda:
        ENV
    shell:
        "medssl pretrain --config {params.config} --study {wildcards.study} --run {wildcards.run} "
        "--pool {wildcards.pool} --out {params.out} > {log} 2>&1"


rule finetune:
    input:
        store=lambda wildcards: store_dir(wildcards.dataset),
        split=lambda wildcards: split_file(wildcards.dataset),
        pretrained=pretrained_model,
    output:
        model=finetuned_model_output(f"{OUT}/{{study}}/finetune/{{run}}/{{dataset}}/{{ratio}}/seed{{seed}}/model.pt"),
    params:
        config=CONFIG,
        out=lambda wildcards, output: os.path.dirname(output.model),
        pretrained=pretrained_arg,
    log:
        f"{LOGS}/finetune/{{study}}/{{run}}/{{dataset}}/{{ratio}}/seed{{seed}}.log",
    benchmark:
        f"{BENCH}/finetune/{{study}}/{{run}}/{{dataset}}/{{ratio}}/seed{{seed}}.tsv"
    threads: config.get("threads", 2)
    resources:
        mem_mb=16000,
        runtime=stage_resources("finetune"),
        gpu=1,
    conda:
        ENV
    shell:
        "medssl finetune --config {params.config} --study {wildcards.study} --run {wildcards.run} "
        "--dataset {wildcards.dataset} --ratio {wildcards.ratio} --seed {wildcards.seed} "
        "--out {params.out} {params.pretrained} > {log} 2>&1"


rule evaluate:
    input:
        model=f"{OUT}/{{study}}/finetune/{{run}}/{{dataset}}/{{ratio}}/seed{{seed}}/model.pt",
        store=lambda wildcards: store_dir(wildcards.dataset),
        split=lambda wildcards: split_file(wildcards.dataset),
    output:
        metrics=f"{OUT}/{{study}}/metrics/{{run}}/{{dataset}}/{{ratio}}/seed{{seed}}.json",
        pred=f"{OUT}/{{study}}/metrics/{{run}}/{{dataset}}/{{ratio}}/seed{{seed}}_pred.npz",
    params:
        config=CONFIG,
    log:
        f"{LOGS}/evaluate/{{study}}/{{run}}/{{dataset}}/{{ratio}}/seed{{seed}}.log",
    threads: 1
    resources:
        mem_mb=8000,
        runtime=30,
    conda:
        ENV
    shell:
        "medssl evaluate --config {params.config} --study {wildcards.study} --run {wildcards.run} "
        "--dataset {wildcards.dataset} --ratio {wildcards.ratio} --seed {wildcards.seed} "
        "--model {input.model} --out {output.metrics} > {log} 2>&1"
