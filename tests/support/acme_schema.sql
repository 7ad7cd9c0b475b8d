-- SPDX-License-Identifier: Apache-2.0
-- The tables cert_poll reads and writes, as acme2certifier's wsgi database
-- handler creates them in a new SQLite file (current generation). The other
-- tables of that handler (nonce, cliaccount, authorization, challenge,
-- housekeeping, cahandler) are left out because cert_poll does not use them.
-- The certificate table's foreign key names the table "order" although the
-- table is called "orders": acme2certifier declares it that way, and SQLite
-- does not enforce foreign keys unless PRAGMA foreign_keys is on.
-- Use: sqlite3 acme_srv.db < acme_schema.sql
BEGIN;
CREATE TABLE "status" ("id" integer NOT NULL PRIMARY KEY AUTOINCREMENT, "name" varchar(15) UNIQUE NOT NULL);
INSERT INTO status(name) VALUES('invalid');
INSERT INTO status(name) VALUES('pending');
INSERT INTO status(name) VALUES('ready');
INSERT INTO status(name) VALUES('processing');
INSERT INTO status(name) VALUES('valid');
INSERT INTO status(name) VALUES('expired');
INSERT INTO status(name) VALUES('deactivated');
INSERT INTO status(name) VALUES('revoked');
CREATE TABLE "account" ("id" integer NOT NULL PRIMARY KEY AUTOINCREMENT, "name" varchar(15) NOT NULL UNIQUE, "alg" varchar(10) NOT NULL, "jwk" TEXT UNIQUE NOT NULL, "contact" TEXT NOT NULL, "eab_kid" varchar(255) DEFAULT '', "status_id" integer NOT NULL REFERENCES "status" ("id") DEFAULT 5, "created_at" TIMESTAMP DEFAULT CURRENT_TIMESTAMP NOT NULL);
CREATE TABLE "orders" ("id" integer NOT NULL PRIMARY KEY AUTOINCREMENT, "name" varchar(15) UNIQUE NOT NULL, "notbefore" integer DEFAULT 0, "notafter" integer DEFAULT 0, "identifiers" text NOT NULL, "account_id" integer NOT NULL REFERENCES "account" ("id"), "profile" varchar(64), "status_id" integer NOT NULL REFERENCES "status" ("id") DEFAULT 2, "expires" integer NOT NULL, "created_at" TIMESTAMP DEFAULT CURRENT_TIMESTAMP NOT NULL);
CREATE TABLE "certificate" ("id" integer NOT NULL PRIMARY KEY AUTOINCREMENT, "name" varchar(15) NOT NULL UNIQUE, "cert" text, "cert_raw" text, "error" text, "order_id" integer NOT NULL REFERENCES "order" ("id"), "csr" text NOT NULL, "poll_identifier" text, "header_info" text, "created_at" TIMESTAMP DEFAULT CURRENT_TIMESTAMP NOT NULL, "renewal_info" text, "aki" text, "serial" text, "issue_uts" integer DEFAULT 0, "expire_uts" integer DEFAULT 0, "replaced" boolean DEFAULT 0);
COMMIT;
