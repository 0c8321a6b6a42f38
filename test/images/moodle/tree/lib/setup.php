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

// PDO for both of Moodle's common engines: $CFG->dbtype 'pgsql' or 'mariadb'/'mysqli'.
function moodle_db(): PDO {
    global $CFG;
    $driver = $CFG->dbtype === 'pgsql' ? 'pgsql' : 'mysql';
    $dsn = "$driver:host={$CFG->dbhost};port={$CFG->dboptions['dbport']};dbname={$CFG->dbname}";
    return new PDO($dsn, $CFG->dbuser, $CFG->dbpass, [PDO::ATTR_ERRMODE => PDO::ERRMODE_EXCEPTION]);
}

function cli_maintenance_file(): string {
    global $CFG;
    return $CFG->dataroot . '/climaintenance.html';
}

// Like Moodle's lib/setup.php: every CLI script (maintenance.php, upgrade.php, cfg.php) connects to the
// database before it does anything, so none of them works while the database is down or missing.
if (defined('CLI_SCRIPT') && CLI_SCRIPT) {
    try {
        moodle_db();
    } catch (Throwable $e) {
        fwrite(STDERR, "Error: Database connection failed (" . $e->getMessage() . ")\n");
        exit(1);
    }
}
