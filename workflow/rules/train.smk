# Training stage: pretrain (once per run and pool) -> finetune (per dataset, label ratio, seed), which also
# evaluates the selected model on the test patients in the same process (one model load, no model file unless
# keep_finetuned_models).
# Training rules declare a GPU; locally they run on whatever device is there (config `device: auto`).


rule pretrain:
    input:
        unpack(pretrain_inputs),
    output:
        model=str(LAYOUT.pretrained_model("{study}", "{run}", "{pool}")),
    log:
        str(LAYOUT.log("pretrain", "{study}", "{run}", "{pool}")),
    benchmark:
        str(LAYOUT.benchmark("pretrain", "{study}", "{run}", "{pool}"))
    conda:
        ENV
    threads: config.get("threads", 2)
    resources:
        mem_mb=16000,
        runtime=stage_resources("pretrain"),
        gpu=1,
    params:
        config=PLAN_FILE,
        settings=settings_digest("pretrain"),
        out=lambda wildcards, output: os.path.dirname(output.model),
    shell:
        "medssl pretrain --config {params.config:q} --settings {params.settings:q} --study {wildcards.study:q} --run {wildcards.run:q} "
        "--pool {wildcards.pool:q} --stores {input.stores:q} --splits {input.splits:q} --out {params.out:q} > {log:q} 2>&1"


rule finetune:
    input:
        store=lambda wildcards: store_dir(wildcards.dataset),
        split=lambda wildcards: split_file(wildcards.dataset),
        pretrained=pretrained_model,
    output:
        **finetune_outputs(),
    log:
        str(LAYOUT.log("finetune", *JOB[:4], "seed{seed}")),
    benchmark:
        str(LAYOUT.benchmark("finetune", *JOB[:4], "seed{seed}"))
    conda:
        ENV
    threads: config.get("threads", 2)
    resources:
        mem_mb=16000,
        runtime=stage_resources("finetune"),
        gpu=1,
    params:
        config=PLAN_FILE,
        settings=settings_digest("finetune"),
        out=finetune_dir,
        pretrained=pretrained_arg,
        keep=keep_model_arg,
    shell:
        "medssl finetune --config {params.config:q} --settings {params.settings:q} --study {wildcards.study:q} --run {wildcards.run:q} "
        "--dataset {wildcards.dataset:q} --ratio {wildcards.ratio:q} --seed {wildcards.seed:q} "
        "--store {input.store:q} --split {input.split:q} "
        "--out {params.out:q} {params.pretrained:q} --metrics {output.metrics:q} --predictions {output.pred:q} "
        "{params.keep:q} > {log:q} 2>&1"
