# Reports: every table and figure of both papers as a file target (config `reports:` block).
#   snakemake results/<exp>/tables/hssl_table2.md    runs only the jobs that table needs.
# One rule for the tables (CSV, Markdown, HTML) and one for the figures (PNG); the target's name is the
# wildcard, its inputs come from the plan (medssl.plan), its caption from workflow/report/{tables,figures}.rst.


rule report_table:
    input:
        report_inputs,
    output:
        csv=str(LAYOUT.output("tables/{target}.csv")),
        md=str(LAYOUT.output("tables/{target}.md")),
        html=report(
            str(LAYOUT.output("tables/{target}.html")),
            caption="../report/tables.rst",
            category=report_category,
            labels=report_labels,
        ),
    log:
        str(LAYOUT.log("reports", "{target}")),
    wildcard_constraints:
        target="|".join(TABLE_TARGETS) or "NONE",
    conda:
        ENV
    threads: 1
    resources:
        mem_mb=4000,
        runtime=30,
    params:
        settings=settings("report"),
    shell:
        "medssl report --settings {params.settings:q} --inputs {input:q} "
        "--outputs {output.csv:q} {output.md:q} {output.html:q} > {log:q} 2>&1"


rule report_figure:
    input:
        report_inputs,
    output:
        png=report(
            str(LAYOUT.output("figures/{target}.png")),
            caption="../report/figures.rst",
            category=report_category,
            labels=report_labels,
        ),
    log:
        str(LAYOUT.log("reports", "{target}")),
    wildcard_constraints:
        target="|".join(FIGURE_TARGETS) or "NONE",
    conda:
        ENV
    threads: 1
    resources:
        mem_mb=4000,
        runtime=30,
    params:
        settings=settings("report"),
    shell:
        "medssl report --settings {params.settings:q} --inputs {input:q} --outputs {output.png:q} > {log:q} 2>&1"


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
        settings=settings("features"),
        runtime=runtime(),
        vgg19=vgg19_arg,
    shell:
        "medssl features --settings {params.settings:q} {params.runtime:q} --model {input.pretrained:q} "
        "--stores {input.stores:q} {params.vgg19:q} --out {output:q} > {log:q} 2>&1"


rule report_summary:
    input:
        summary_inputs,
    output:
        csv=str(LAYOUT.output(SUMMARY_OUTPUTS[0])),
        md=str(LAYOUT.output(SUMMARY_OUTPUTS[1])),
        html=report(
            str(LAYOUT.output(SUMMARY_OUTPUTS[2])),
            caption="../report/summary.rst",
            category="Studies without a paper report",
            labels=lambda wildcards: {"title": f"Summary of study {wildcards.study}"},
        ),
        png=report(
            str(LAYOUT.output(SUMMARY_OUTPUTS[3])),
            caption="../report/summary.rst",
            category="Studies without a paper report",
            labels=lambda wildcards: {
                "title": f"Summary of study {wildcards.study} (figure)"
            },
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
        settings=settings("summary"),
    shell:
        "medssl summary --settings {params.settings:q} --inputs {input:q} "
        "--outputs {output.csv:q} {output.md:q} {output.html:q} {output.png:q} > {log:q} 2>&1"
