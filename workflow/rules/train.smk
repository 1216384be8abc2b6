# Training stage: pretrain (once per run and pool) -> finetune (per dataset, label ratio and seed), which also
# evaluates the selected model on the test patients in the same process (one model load, no model file unless
# keep_finetuned_models).
# Each job reads its settings record (params.settings) and where it runs (params.runtime: device, threads,
# loader workers, checkpoint interval; changing these reruns nothing). Training rules declare a GPU; locally
# they run on whatever device is there (config `device: auto`).


rule pretrain:
    input:
        unpack(pretrain_inputs),
    output:
        model=str(LAYOUT.pretrained_model("{study}", "{run}", "{pool}")),
        progress=report(
            str(LAYOUT.progress(LAYOUT.pretrain_dir("{study}", "{run}", "{pool}"))),
            caption="../report/progress.rst",
            category="Training",
            subcategory="{study}: pretraining",
            labels={"run": "{run}", "pool": "{pool}"},
        ),
    log:
        str(LAYOUT.log("pretrain", "{study}", "{run}", "{pool}")),
    benchmark:
        str(LAYOUT.benchmark("pretrain", "{study}", "{run}", "{pool}"))
    conda:
        ENV
    threads: pretrain_threads
    resources:
        mem_mb=pretrain_mem_mb,
        runtime=stage_resources("pretrain"),
        gpu=pretrain_gpus,
    params:
        settings=settings("pretrain"),
        runtime=runtime("pretrain"),
        out=lambda wildcards, output: os.path.dirname(output.model),
    shell:
        "medssl pretrain --settings {params.settings:q} {params.runtime:q} --stores {input.stores:q} "
        "--splits {input.splits:q} --out {params.out:q} > {log:q} 2>&1"


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
    # packed on a cluster: the profile's group-components puts K finetunes of one run in one job
    group:
        "finetune_{study}_{run}"
    conda:
        ENV
    threads: PLAN_CONFIG["threads"]
    resources:
        mem_mb=16000,
        runtime=stage_resources("finetune"),
        gpu=1,
    params:
        settings=settings("finetune"),
        runtime=runtime("finetune"),
        out=finetune_dir,
        pretrained=pretrained_arg,
        model=keep_model_arg,
    shell:
        "medssl finetune --settings {params.settings:q} {params.runtime:q} --store {input.store:q} "
        "--split {input.split:q} --out {params.out:q} {params.pretrained:q} --metrics {output.metrics:q} "
        "--predictions {output.pred:q} {params.model:q} > {log:q} 2>&1"
