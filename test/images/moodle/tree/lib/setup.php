<?php
// Minimal bootstrap of the stand-in: constants and a DB connection helper.
if (!defined('MOODLE_INTERNAL')) {
    define('MOODLE_INTERNAL', true);
}
if (!defined('MATURITY_STABLE')) {
    define('MATURITY_STABLE', 200);
}

function moodle_code_version(): array {
    $version = null; $release = null;
    include(__DIR__ . '/../version.php');
    return [$version, $release];
}

function moodle_db(): mysqli {
    global $CFG;
    mysqli_report(MYSQLI_REPORT_ERROR | MYSQLI_REPORT_STRICT);
    return new mysqli($CFG->dbhost, $CFG->dbuser, $CFG->dbpass, $CFG->dbname, $CFG->dboptions['dbport']);
}

function cli_maintenance_file(): string {
    global $CFG;
    return $CFG->dataroot . '/climaintenance.html';
}

// Like Moodle's lib/setup.php: every CLI script (maintenance.php, upgrade.php, cfg.php) connects to the
// database before it does anything, so none of them works while the database is down or missing.
if (defined('CLI_SCRIPT') && CLI_SCRIPT) {
    try {
        moodle_db()->close();
    } catch (Throwable $e) {
        fwrite(STDERR, "Error: Database connection failed (" . $e->getMessage() . ")\n");
        exit(1);
    }
}
