# Reports: every table and figure of both papers as a file target (config `reports:` block).
#   snakemake results/<exp>/tables/hssl_table2.md    runs only the jobs that table needs.


for _target in REPORTS:

    rule:
        name:
            f"report_{_target}"
        input:
            report_inputs_of(_target),
        output:
            [
                report(path, caption=f"../report/{_target}.rst", category=report_category(_target))
                for path in report_outputs(_target)
            ],
        params:
            config=CONFIG,
            target=_target,
        log:
            f"{LOGS}/reports/{_target}.log",
        threads: 1
        resources:
            mem_mb=4000,
            runtime=30,
        conda:
            ENV
        shell:
            "medssl report --config {params.config} --target {params.target} --inputs {input} "
            "--outputs {output} > {log} 2>&1"


rule tsne_features:
    input:
        pretrained=lambda wildcards: f"{OUT}/{wildcards.study}/pretrain/{wildcards.run}/all/model.pt",
    output:
        f"{OUT}/{{study}}/features/{{run}}.npz",
    params:
        config=CONFIG,
    log:
        f"{LOGS}/features/{{study}}/{{run}}.log",
    threads: 1
    resources:
        mem_mb=4000,
        runtime=30,
    conda:
        ENV
    shell:
        "medssl features --config {params.config} --study {wildcards.study} --run {wildcards.run} "
        "--out {output} > {log} 2>&1"
