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
                (
                    report(
                        path,
                        caption=f"../report/{_target}.rst",
                        category=report_category(_target),
                    )
                    if shown_in_report(path)
                    else path
                )
                for path in report_outputs(_target)
            ],
        log:
            str(LAYOUT.log("reports", _target)),
        conda:
            ENV
        threads: 1
        resources:
            mem_mb=4000,
            runtime=30,
        params:
            config=PLAN_FILE,
            settings=medssl_jobs.digest(medssl_jobs.report(config, _target)),
            target=_target,
        shell:
            "medssl report --config {params.config:q} --settings {params.settings:q} --target {params.target:q} --inputs {input:q} "
            "--outputs {output:q} > {log:q} 2>&1"


rule tsne_features:
    input:
        unpack(features_inputs),
    output:
        str(LAYOUT.features("{study}", "{run}")),
    log:
        str(LAYOUT.log("features", "{study}", "{run}")),
    conda:
        ENV
    threads: 1
    resources:
        mem_mb=4000,
        runtime=30,
    params:
        config=PLAN_FILE,
        settings=settings_digest("features"),
    shell:
        "medssl features --config {params.config:q} --settings {params.settings:q} --study {wildcards.study:q} --run {wildcards.run:q} "
        "--model {input.pretrained:q} --stores {input.stores:q} --out {output:q} > {log:q} 2>&1"


rule report_summary:
    input:
        lambda wildcards: summary_inputs(wildcards.study),
    output:
        csv=str(LAYOUT.output(SUMMARY_OUTPUTS[0])),
        md=str(LAYOUT.output(SUMMARY_OUTPUTS[1])),
        html=report(
            str(LAYOUT.output(SUMMARY_OUTPUTS[2])),
            caption="../report/summary.rst",
            category="Studies without a paper report",
        ),
        png=report(
            str(LAYOUT.output(SUMMARY_OUTPUTS[3])),
            caption="../report/summary.rst",
            category="Studies without a paper report",
        ),
    log:
        str(LAYOUT.log("reports", "summary_{study}")),
    conda:
        ENV
    threads: 1
    resources:
        mem_mb=4000,
        runtime=30,
    params:
        config=PLAN_FILE,
        settings=settings_digest("summary"),
    shell:
        "medssl summary --config {params.config:q} --settings {params.settings:q} --study {wildcards.study:q} "
        "--inputs {input:q} --outputs {output.csv:q} {output.md:q} {output.html:q} {output.png:q} > {log:q} 2>&1"
