# Training stage: pretrain (once per run and pool) -> finetune (per dataset, label ratio, seed) -> evaluate.
# Training rules declare a GPU; locally they run on whatever device is there (config `device: auto`).


rule pretrain:
    input:
        unpack(pretrain_inputs),
    output:
        model=f"{OUT}/{{study}}/pretrain/{{run}}/{{pool}}/model.pt",
    log:
        f"{LOGS}/pretrain/{{study}}/{{run}}/{{pool}}.log",
    benchmark:
        f"{BENCH}/pretrain/{{study}}/{{run}}/{{pool}}.tsv"
    conda:
        ENV
    threads: config.get("threads", 2)
    resources:
        mem_mb=16000,
        runtime=stage_resources("pretrain"),
        gpu=1,
    params:
        config=CONFIG,
        settings=settings_digest("pretrain"),
        out=lambda wildcards, output: os.path.dirname(output.model),
    shell:
        "medssl pretrain --config {params.config:q} --settings {params.settings:q} --study {wildcards.study:q} --run {wildcards.run:q} "
        "--pool {wildcards.pool:q} --out {params.out:q} > {log:q} 2>&1"


rule finetune:
    input:
        store=lambda wildcards: store_dir(wildcards.dataset),
        split=lambda wildcards: split_file(wildcards.dataset),
        pretrained=pretrained_model,
    output:
        model=finetuned_model_output(
            f"{OUT}/{{study}}/finetune/{{run}}/{{dataset}}/{{ratio}}/seed{{seed}}/model.pt"
        ),
    log:
        f"{LOGS}/finetune/{{study}}/{{run}}/{{dataset}}/{{ratio}}/seed{{seed}}.log",
    benchmark:
        f"{BENCH}/finetune/{{study}}/{{run}}/{{dataset}}/{{ratio}}/seed{{seed}}.tsv"
    conda:
        ENV
    threads: config.get("threads", 2)
    resources:
        mem_mb=16000,
        runtime=stage_resources("finetune"),
        gpu=1,
    params:
        config=CONFIG,
        settings=settings_digest("finetune"),
        out=lambda wildcards, output: os.path.dirname(output.model),
        pretrained=pretrained_arg,
    shell:
        "medssl finetune --config {params.config:q} --settings {params.settings:q} --study {wildcards.study:q} --run {wildcards.run:q} "
        "--dataset {wildcards.dataset:q} --ratio {wildcards.ratio:q} --seed {wildcards.seed:q} "
        "--out {params.out:q} {params.pretrained:q} > {log:q} 2>&1"


rule evaluate:
    input:
        model=f"{OUT}/{{study}}/finetune/{{run}}/{{dataset}}/{{ratio}}/seed{{seed}}/model.pt",
        store=lambda wildcards: store_dir(wildcards.dataset),
        split=lambda wildcards: split_file(wildcards.dataset),
    output:
        metrics=f"{OUT}/{{study}}/metrics/{{run}}/{{dataset}}/{{ratio}}/seed{{seed}}.json",
        pred=f"{OUT}/{{study}}/metrics/{{run}}/{{dataset}}/{{ratio}}/seed{{seed}}_pred.npz",
    log:
        f"{LOGS}/evaluate/{{study}}/{{run}}/{{dataset}}/{{ratio}}/seed{{seed}}.log",
    benchmark:
        f"{BENCH}/evaluate/{{study}}/{{run}}/{{dataset}}/{{ratio}}/seed{{seed}}.tsv"
    conda:
        ENV
    threads: 1
    resources:
        mem_mb=8000,
        runtime=30,
    params:
        config=CONFIG,
        settings=settings_digest("evaluate"),
    shell:
        "medssl evaluate --config {params.config:q} --settings {params.settings:q} --study {wildcards.study:q} --run {wildcards.run:q} "
        "--dataset {wildcards.dataset:q} --ratio {wildcards.ratio:q} --seed {wildcards.seed:q} "
        "--model {input.model:q} --out {output.metrics:q} > {log:q} 2>&1"
